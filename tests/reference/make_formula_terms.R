## make_formula_terms.R -- lme4 reference fits for formula terms and names (issue 11).
##
## Run from the repository root:
##     Rscript tests/reference/make_formula_terms.R
##
## Writes tests/reference/data/sleepstudy_extra.csv (lme4::sleepstudy with extra columns:
## `Intercept`, a N(0, 1) column with set.seed(20261201), and `center`, a copy of Days), reads
## it back, fits lme4::lmer (REML and ML) for each formula below and writes
## tests/reference/formula_terms.json: per fit the call, fixef (R's names), fixef SEs,
## sigma, the REML criterion or deviance, logLik, and the dropped columns of rank-deficient
## designs. Requires (Debian): r-base-core r-cran-lme4 r-cran-jsonlite.

options(digits = 15, warn = 1, stringsAsFactors = FALSE)
invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })

out_dir <- file.path("tests", "reference")
if (!dir.exists(out_dir)) stop("run from the repository root")
csv <- file.path(out_dir, "data", "sleepstudy_extra.csv")

set.seed(20261201)
d <- lme4::sleepstudy
d$Subject <- as.character(d$Subject)
d$Intercept <- round(rnorm(nrow(d)), 6)
d$center <- d$Days
write.csv(d, csv, row.names = FALSE)
d <- read.csv(csv, colClasses = c(Subject = "character"))
d$Subject <- factor(d$Subject, levels = sort(unique(d$Subject), method = "radix"))

formulas <- c(
  intercept_column = "Reaction ~ Days + Intercept + (1 | Subject)",
  scale = "Reaction ~ scale(Days) + (1 | Subject)",
  scale_no_centre = "Reaction ~ scale(Days, center = FALSE) + (1 | Subject)",
  centre = "Reaction ~ scale(Days, scale = FALSE) + (1 | Subject)",
  poly2 = "Reaction ~ poly(Days, 2) + (Days | Subject)",
  power = "Reaction ~ Days + I(Days^2) + (Days | Subject)",
  log = "Reaction ~ log(Days + 1) + (1 | Subject)",
  factor = "Reaction ~ factor(Days) + (1 | Subject)",
  center_column = "Reaction ~ center + (center | Subject)"
)

fit_one <- function(f, reml) {
  ws <- character(0)
  m <- withCallingHandlers(lmer(as.formula(f), data = d, REML = reml),
                           warning = function(w) { ws <<- c(ws, conditionMessage(w)); invokeRestart("muffleWarning") })
  list(r_call = sprintf("lmer(%s, data = d, REML = %s)", f, reml), formula = f,
       method = if (reml) "REML" else "ML",
       fixef = as.list(fixef(m)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       sigma = sigma(m), criterion = if (reml) unname(getME(m, "devcomp")$cmp[["REML"]]) else deviance(m),
       logLik = as.numeric(logLik(m)), theta_lme4 = unname(getME(m, "theta")), warnings = ws)
}

fits <- list()
for (name in names(formulas)) for (reml in c(TRUE, FALSE))
  fits[[paste0(name, "_", if (reml) "REML" else "ML")]] <- fit_one(formulas[[name]], reml)

## more fixed-effect columns than rows: 8 rows, 2 groups, 9 N(0, 1) predictors (set.seed(7))
set.seed(7)
wide <- data.frame(g = rep(c("a", "b"), each = 4), y = round(rnorm(8), 6))
for (j in 1:9) wide[[paste0("x", j)]] <- round(rnorm(8), 6)
wide_csv <- file.path(out_dir, "data", "wide.csv")
write.csv(wide, wide_csv, row.names = FALSE)
wide <- read.csv(wide_csv)
X <- model.matrix(as.formula(paste("y ~", paste0("x", 1:9, collapse = " + "))), wide)
rk <- lme4:::chkRank.drop.cols(X, kind = "message+drop.cols", tol = 1e-7)

out <- list(
  generated_by = "tests/reference/make_formula_terms.R", data = "data/sleepstudy_extra.csv",
  r_versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4"))),
  fits = fits,
  wide = list(data = "data/wide.csv", columns = colnames(X), kept = colnames(rk),
              dropped = setdiff(colnames(X), colnames(rk)),
              r_call = "lme4:::chkRank.drop.cols(model.matrix(y ~ x1 + ... + x9, wide), kind = 'message+drop.cols', tol = 1e-7)"))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out_dir, "formula_terms.json"))
cat("wrote", file.path(out_dir, "formula_terms.json"), "\n")
