## make_honest_flags.R -- lme4 / glmmTMB references for issue 11's honest flags.
##
## Run from the repository root:
##     Rscript tests/reference/make_honest_flags.R
##
## Reads tests/reference/data/poisson_large_counts.csv (simulated with numpy: 10 groups x 20
## rows, y ~ Poisson(exp(log(4e5) + 0.1 x + b_g)), b_g ~ N(0, 0.2^2)) and
## tests/reference/data/binomial_separation.csv (y = 1 exactly where x > 0: complete
## separation) and writes tests/reference/honest_flags.json with each fit's call, logLik,
## deviance (-2 logLik), fixef, the warnings and messages R gave, and for the constant
## response lme4's error. Requires (Debian): r-base-core r-cran-lme4 r-cran-glmmtmb r-cran-jsonlite.

options(digits = 15, warn = 1, stringsAsFactors = FALSE)
suppressPackageStartupMessages({ library(lme4); library(glmmTMB); library(jsonlite) })
out_dir <- file.path("tests", "reference")
if (!dir.exists(out_dir)) stop("run from the repository root")

capture <- function(expr) {
  ws <- character(0); ms <- character(0)
  val <- withCallingHandlers(tryCatch(expr, error = function(e) structure(conditionMessage(e), class = "fit_error")),
    warning = function(w) { ws <<- c(ws, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { ms <<- c(ms, sub("\n$", "", conditionMessage(m))); invokeRestart("muffleMessage") })
  list(value = val, warnings = ws, messages = ms)
}
summarise <- function(call, res) {
  m <- res$value
  if (inherits(m, "fit_error")) return(list(r_call = call, error = unclass(m), warnings = res$warnings))
  ll <- as.numeric(logLik(m))
  conv <- if (inherits(m, "merMod")) m@optinfo$conv$lme4$messages else m$fit$message
  list(r_call = call, logLik = ll, deviance = -2 * ll, fixef = as.list(if (inherits(m, "merMod")) fixef(m) else fixef(m)$cond),
       warnings = c(res$warnings, conv), messages = res$messages)
}

pois <- read.csv(file.path(out_dir, "data", "poisson_large_counts.csv"))
sep <- read.csv(file.path(out_dir, "data", "binomial_separation.csv"))
sleep <- lme4::sleepstudy
sleep$Reaction <- 300

fits <- list(
  poisson_glmer = summarise("glmer(y ~ x + (1 | g), data = pois, family = poisson)",
                            capture(glmer(y ~ x + (1 | g), data = pois, family = poisson))),
  poisson_glmmTMB = summarise("glmmTMB(y ~ x + (1 | g), data = pois, family = poisson)",
                              capture(glmmTMB(y ~ x + (1 | g), data = pois, family = poisson))),
  separation_glmer = summarise("glmer(y ~ x + (1 | g), data = sep, family = binomial)",
                               capture(glmer(y ~ x + (1 | g), data = sep, family = binomial))),
  constant_lmer = summarise("lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy with Reaction = 300)",
                            capture(lmer(Reaction ~ Days + (Days | Subject), data = sleep)))
)
out <- list(generated_by = "tests/reference/make_honest_flags.R",
            r_versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                              glmmTMB = as.character(packageVersion("glmmTMB"))),
            fits = fits)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"), file.path(out_dir, "honest_flags.json"))
cat("wrote", file.path(out_dir, "honest_flags.json"), "\n")
