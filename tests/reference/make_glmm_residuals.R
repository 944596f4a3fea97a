## make_glmm_residuals.R -- lme4 / glmmTMB references for tests/test_glmm_defaults.py.
##
## Run from the repository root:
##     Rscript tests/reference/make_glmm_residuals.R
##
## Writes tests/reference/glmm_residuals.json from the CSVs already in
## tests/reference/data (written by make_references.R or copied from shared/data; it
## writes no data file):
##
## * residuals of two GLMMs: glmer's residuals(m, "response") and
##   residuals(m, "pearson", scaled = TRUE) (what summary() prints as "Scaled
##   residuals", with their quantiles), and glmmTMB's "response" and "pearson"
##   residuals, for cbpp (binomial, cbind response) and grouseticks (Poisson);
## * lmer / glmmTMB fits of Orthodont with three random-effect terms on one
##   grouping factor, which lme4's per-term check "number of observations <= number
##   of random effects" accepts (108 observations; 54, 27 and 27 random effects).
##
## Requires (Debian): r-base-core r-cran-lme4 r-cran-glmmtmb r-cran-jsonlite.

options(digits = 15, warn = 1, stringsAsFactors = FALSE)
invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})

out_dir <- file.path("tests", "reference")
if (!dir.exists(file.path(out_dir, "data")))
  stop("run from the repository root: Rscript tests/reference/make_glmm_residuals.R")
SCRIPT <- "tests/reference/make_glmm_residuals.R"

pkgv <- function(p) as.character(packageVersion(p))
r_versions <- list(R = R.version.string, platform = R.version$platform, lme4 = pkgv("lme4"),
                   glmmTMB = pkgv("glmmTMB"), TMB = pkgv("TMB"), Matrix = pkgv("Matrix"),
                   jsonlite = pkgv("jsonlite"))

capture <- function(expr) {
  ws <- character(0); ms <- character(0)
  val <- withCallingHandlers(expr,
    warning = function(w) { ws <<- c(ws, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { ms <<- c(ms, sub("\n$", "", conditionMessage(m))); invokeRestart("muffleMessage") })
  list(value = val, warnings = ws, messages = ms)
}

csort <- function(x) sort(unique(as.character(x)), method = "radix")
as_factor <- function(d, cols) { for (c in cols) d[[c]] <- factor(as.character(d[[c]]), levels = csort(d[[c]])); d }
named <- function(x) as.list(setNames(as.numeric(x), names(x)))
quartiles <- function(r) as.list(setNames(as.numeric(quantile(r)), c("Min", "1Q", "Median", "3Q", "Max")))
run_call <- function(text, d) capture(eval(parse(text = text), envir = list(d = d)))

read_exprs <- list(
  cbpp = paste0('d <- read.csv("tests/reference/data/cbpp.csv", colClasses = c(herd = "character", ',
                'period = "character")); for (c in c("herd", "period")) d[[c]] <- factor(d[[c]], ',
                'levels = sort(unique(d[[c]]), method = "radix"))'),
  grouseticks = paste0('d <- read.csv("tests/reference/data/grouseticks.csv", colClasses = c(BROOD = ',
                       '"character")); d$BROOD <- factor(d$BROOD, levels = sort(unique(d$BROOD), ',
                       'method = "radix")); d$YEAR <- factor(as.character(d$YEAR), levels = ',
                       'sort(unique(as.character(d$YEAR)), method = "radix"))'),
  orthodont = paste0('d <- read.csv("tests/reference/data/orthodont.csv", colClasses = c(Subject = ',
                     '"character", Sex = "character")); d$Subject <- factor(d$Subject, levels = ',
                     'sort(unique(d$Subject), method = "radix")); d$nsex <- as.numeric(d$Sex == "Male"); ',
                     'd$nsexage <- d$nsex * d$age'))
read_case <- function(name) { env <- new.env(); eval(parse(text = read_exprs[[name]]), envir = env); env$d }

## ------------------------------------------------------------------ GLMM residuals
glmm_case <- function(name, glmer_call, tmb_call) {
  d <- read_case(name)
  g <- run_call(glmer_call, d)
  t <- run_call(tmb_call, d)
  m <- g$value; tm <- t$value
  scaled <- residuals(m, "pearson", scaled = TRUE)
  list(
    data_file = sprintf("tests/reference/data/%s.csv", name), r_read_data = read_exprs[[name]],
    nrow = nrow(d),
    lme4 = list(
      r_call = glmer_call,
      residual_calls = c('residuals(m, "response")', 'residuals(m, "pearson", scaled = TRUE)',
                         'quantile(residuals(m, "pearson", scaled = TRUE))'),
      fixef = named(fixef(m)), fixef_se = named(sqrt(diag(as.matrix(vcov(m))))),
      sd = as.numeric(attr(VarCorr(m)[[1]], "stddev")), logLik = as.numeric(logLik(m)),
      response = as.numeric(residuals(m, "response")), pearson_scaled = as.numeric(scaled),
      scaled_quantiles = quartiles(scaled), fitted = as.numeric(fitted(m)),
      warnings = I(g$warnings), messages = I(g$messages)),
    glmmTMB = list(
      r_call = tmb_call,
      residual_calls = c('residuals(m, "response")', 'residuals(m, "pearson")'),
      fixef = named(fixef(tm)$cond), fixef_se = named(sqrt(diag(vcov(tm)$cond))),
      logLik = as.numeric(logLik(tm)),
      response = as.numeric(residuals(tm, "response")), pearson = as.numeric(residuals(tm, "pearson")),
      pearson_quantiles = quartiles(residuals(tm, "pearson")),
      warnings = I(t$warnings), messages = I(t$messages)))
}

out <- list(
  generated_by = SCRIPT, r_versions = r_versions,
  note = paste("Residuals of glmer (Laplace) and glmmTMB fits, each at its own estimates; the",
               "orthodont_terms fits have three random-effect terms on one grouping factor."),
  cbpp = glmm_case("cbpp",
                   "glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = d, family = binomial)",
                   "glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), data = d, family = binomial)"),
  grouseticks = glmm_case("grouseticks",
                          "glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD), data = d, family = poisson)",
                          "glmmTMB(TICKS ~ YEAR + cHEIGHT + (1 | BROOD), data = d, family = poisson)"))

## ------------------------------------------------------------------ per-term identifiability
ORTHO <- "distance ~ age + (age | Subject) + (0 + nsex | Subject) + (0 + nsexage | Subject)"
d <- read_case("orthodont")
fits <- list()
for (reml in c(TRUE, FALSE)) {
  method <- if (reml) "REML" else "ML"
  call <- sprintf("lmer(%s, data = d, REML = %s)", ORTHO, reml)
  f <- run_call(call, d); m <- f$value
  vc <- VarCorr(m)
  fits[[paste0("lme4_lmer_", method)]] <- list(
    r_call = call, fixef = named(fixef(m)), fixef_se = named(sqrt(diag(as.matrix(vcov(m))))),
    sd = lapply(vc, function(v) as.numeric(attr(v, "stddev"))),
    corr_intercept_age = attr(vc[[1]], "correlation")[1, 2],
    sigma = sigma(m), logLik = as.numeric(logLik(m)),
    criterion = if (reml) as.numeric(-2 * logLik(m)) else as.numeric(deviance(m)),
    singular = isSingular(m),
    term_nRE = as.list(vapply(lFormula(as.formula(ORTHO), data = d, REML = reml)$reTrms$Ztlist, nrow, 1L)),
    warnings = I(f$warnings), messages = I(f$messages))
  call <- sprintf("glmmTMB(%s, data = d, REML = %s)", ORTHO, reml)
  f <- run_call(call, d); tm <- f$value
  fits[[paste0("glmmTMB_", method)]] <- list(
    r_call = call, fixef = named(fixef(tm)$cond), fixef_se = named(sqrt(diag(vcov(tm)$cond))),
    sd = lapply(VarCorr(tm)$cond, function(v) as.numeric(attr(v, "stddev"))),
    sigma = sigma(tm), logLik = as.numeric(logLik(tm)),
    warnings = I(f$warnings), messages = I(f$messages))
}
out$orthodont_terms <- list(data_file = "tests/reference/data/orthodont.csv", r_read_data = read_exprs$orthodont,
                            formula = ORTHO, nrow = nrow(d), fits = fits)

writeLines(toJSON(out, auto_unbox = TRUE, digits = I(15), pretty = TRUE, null = "null"),
           file.path(out_dir, "glmm_residuals.json"))
cat("wrote", file.path(out_dir, "glmm_residuals.json"), "\n")
