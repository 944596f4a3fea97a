## make_varcorr.R -- lme4's as.data.frame(VarCorr(m)) rows, for the JSON's "varcorr" (issue 13).
##
## Run from the repository root:
##     Rscript tests/reference/make_varcorr.R
##
## Fits on lme4::sleepstudy (REML) Reaction ~ Days + (Days | Subject) and
## Reaction ~ Days + (Days || Subject), and on lme4::cbpp (ML, Laplace)
## cbind(incidence, size - incidence) ~ period + (1 | herd), and writes
## tests/reference/varcorr.json: per fit the rows grp, var1, var2 (null for NA), vcov, sdcor.
## Requires (Debian): r-base-core r-cran-lme4 r-cran-jsonlite. lme4 1.1-31, R 4.2.2.

options(digits = 15, warn = 1)
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
out_dir <- file.path("tests", "reference")
if (!dir.exists(out_dir)) stop("run from the repository root")
rows <- function(m) {
  vc <- as.data.frame(VarCorr(m))
  lapply(seq_len(nrow(vc)), function(i) list(group = vc$grp[i], var1 = if (is.na(vc$var1[i])) NULL else vc$var1[i],
                                             var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i],
                                             vcov = vc$vcov[i], sdcor = vc$sdcor[i]))
}
fits <- list(
  sleepstudy = rows(lmer(Reaction ~ Days + (Days | Subject), sleepstudy)),
  sleepstudy_uncorr = rows(lmer(Reaction ~ Days + (Days || Subject), sleepstudy)),
  cbpp = rows(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial))
)
writeLines(toJSON(list(R = R.version.string, lme4 = as.character(packageVersion("lme4")), fits = fits),
                  auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           file.path(out_dir, "varcorr.json"))
