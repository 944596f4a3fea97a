# Peer fits for benchmarks/bench_glmm.py: glmmTMB (and lme4::glmer for Poisson) by ML.
#
# Usage:  Rscript benchmarks/glmm_peers.R DATA.csv student_t|poisson
#
# Times the fitting call only (system.time elapsed): median of 3 repeats, or a single fit when
# the first takes more than 30 s. Prints one JSON object on stdout:
#   {"R": ..., "glmmTMB_version": ..., "lme4_version": ...,
#    "glmmTMB": {time, times, logLik, fixef, sigma, df, converged}, "glmer": {...} | null}
# For the t family sigma(fit) is the t scale and df = exp(psi) (family_params(fit) when present).

suppressPackageStartupMessages({
  library(jsonlite)
  library(glmmTMB)
  library(lme4)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 2) stop("usage: Rscript glmm_peers.R DATA.csv student_t|poisson")
path <- args[[1]]
model <- args[[2]]
d <- read.csv(path)
d$g <- factor(d$g)

timed <- function(fitfun) {
  times <- numeric(0)
  fit <- NULL
  for (i in 1:3) {
    gc()
    t <- system.time(fit <- fitfun())[["elapsed"]]
    times <- c(times, t)
    if (i == 1 && t > 30) break
  }
  list(fit = fit, time = median(times), times = times)
}

tmb_df <- function(fit) {
  fp <- tryCatch(family_params(fit), error = function(e) NULL)
  if (!is.null(fp) && length(fp) > 0) return(unname(fp[[1]]))
  unname(exp(fit$fit$par[["psi"]]))
}

tmb_summary <- function(r, t_family) {
  fit <- r$fit
  out <- list(
    time = r$time, times = r$times,
    logLik = as.numeric(logLik(fit)),
    fixef = as.list(fixef(fit)$cond),
    converged = isTRUE(fit$fit$convergence == 0) && isTRUE(fit$sdr$pdHess),
    message = fit$fit$message
  )
  if (t_family) {
    out$sigma <- sigma(fit)
    out$df <- tmb_df(fit)
  }
  out
}

if (model == "student_t") {
  r <- timed(function() glmmTMB(y ~ x + (x | g), data = d, family = t_family(), REML = FALSE))
  res <- list(glmmTMB = tmb_summary(r, TRUE), glmer = NULL)
} else if (model == "poisson") {
  r <- timed(function() glmmTMB(count ~ x + (1 | g), data = d, family = poisson, REML = FALSE))
  rg <- timed(function() glmer(count ~ x + (1 | g), data = d, family = poisson))  # Laplace (nAGQ = 1)
  gfit <- rg$fit
  conv_msgs <- gfit@optinfo$conv$lme4$messages
  res <- list(
    glmmTMB = tmb_summary(r, FALSE),
    glmer = list(
      time = rg$time, times = rg$times,
      logLik = as.numeric(logLik(gfit)),
      fixef = as.list(fixef(gfit)),
      converged = is.null(conv_msgs) && gfit@optinfo$conv$opt == 0,
      message = if (is.null(conv_msgs)) "" else paste(conv_msgs, collapse = "; ")
    )
  )
} else {
  stop("model must be student_t or poisson")
}

res$R <- R.version.string
res$glmmTMB_version <- as.character(packageVersion("glmmTMB"))
res$lme4_version <- as.character(packageVersion("lme4"))
res$n_rows <- nrow(d)
cat(toJSON(res, auto_unbox = TRUE, digits = NA, null = "null"), "\n")
