## make_crossed.R -- lme4 references for crossed random effects (issue 13).
##
## Run from the repository root:
##     Rscript tests/reference/make_crossed.R
##
## Writes tests/reference/data/penicillin.csv (lme4::Penicillin: diameter, plate, sample) and
## tests/reference/data/verbagg.csv (lme4::VerbAgg: r2 as 0/1, Anger, Gender, btype, situ, id,
## item), fits
##   penicillin: lmer(diameter ~ 1 + (1 | plate) + (1 | sample)), REML and ML;
##   verbagg:    glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), binomial),
##               Laplace (nAGQ = 1), with tight optimiser tolerances, and glmmTMB (1.1.5) on the
##               same formula (its Laplace and optimum are the more precise: -2 logLik
##               8151.399720 against glmer's 8151.400490, which lme4's PIRLS tolerance leaves
##               higher at the same estimates);
## and writes tests/reference/crossed.json: per fit the criterion (REML criterion or
## deviance; for glmer -2 logLik), logLik, fixef (R's names), their SEs (vcov), the
## random-effect SDs per group, sigma, and the conditional modes per group (ranef).
## Requires (Debian): r-base-core r-cran-lme4 r-cran-glmmtmb r-cran-jsonlite. lme4 1.1-31, R 4.2.2.

options(digits = 15, warn = 1, stringsAsFactors = FALSE)
invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages({ library(lme4); library(glmmTMB); library(jsonlite) })

out_dir <- file.path("tests", "reference")
if (!dir.exists(out_dir)) stop("run from the repository root")

pen <- lme4::Penicillin
pen_csv <- data.frame(diameter = pen$diameter, plate = as.character(pen$plate), sample = as.character(pen$sample))
write.csv(pen_csv, file.path(out_dir, "data", "penicillin.csv"), row.names = FALSE)

va <- lme4::VerbAgg
va_csv <- data.frame(r2 = as.integer(va$r2 == "Y"), Anger = va$Anger, Gender = as.character(va$Gender),
                     btype = as.character(va$btype), situ = as.character(va$situ),
                     id = as.character(va$id), item = as.character(va$item))
write.csv(va_csv, file.path(out_dir, "data", "verbagg.csv"), row.names = FALSE)

ranef_list <- function(m) {
  re <- ranef(m)
  lapply(names(re), function(g) list(group = g, levels = rownames(re[[g]]), values = re[[g]][[1]]))
}

summarise <- function(m, call) {
  vc <- as.data.frame(VarCorr(m))
  list(call = call, reml = isREML(m),
       criterion = if (isREML(m)) unname(REMLcrit(m)) else unname(-2 * as.numeric(logLik(m))),
       logLik = as.numeric(logLik(m)),
       fixef = as.list(fixef(m)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       sd = setNames(as.list(vc$sdcor[vc$grp != "Residual"]), vc$grp[vc$grp != "Residual"]),
       sigma = if (family(m)$family == "gaussian") sigma(m) else NULL,
       ranef = ranef_list(m))
}

pen_csv <- read.csv(file.path(out_dir, "data", "penicillin.csv"))
pen_f <- diameter ~ 1 + (1 | plate) + (1 | sample)
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 2e-4, rhoend = 2e-12, maxfun = 1e5))
fits <- list(
  penicillin_REML = summarise(lmer(pen_f, pen_csv, REML = TRUE, control = ctrl), "lmer REML"),
  penicillin_ML = summarise(lmer(pen_f, pen_csv, REML = FALSE, control = ctrl), "lmer ML")
)

va_csv <- read.csv(file.path(out_dir, "data", "verbagg.csv"))
va_f <- r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)
gctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
fits$verbagg_ML <- summarise(glmer(va_f, va_csv, family = binomial, control = gctrl), "glmer binomial Laplace")
tmb <- glmmTMB(va_f, va_csv, family = binomial)
vc_tmb <- VarCorr(tmb)$cond
fits$verbagg_glmmTMB <- list(
  call = "glmmTMB binomial", criterion = -2 * as.numeric(logLik(tmb)), logLik = as.numeric(logLik(tmb)),
  fixef = as.list(fixef(tmb)$cond), fixef_se = as.list(sqrt(diag(vcov(tmb)$cond))),
  sd = lapply(vc_tmb, function(v) unname(attr(v, "stddev"))))

meta <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
             glmmTMB = as.character(packageVersion("glmmTMB")), fits = fits)
writeLines(toJSON(meta, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           file.path(out_dir, "crossed.json"))
