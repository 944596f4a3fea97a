# Peer fits for benchmarks/bench_scaling.py: lme4::lmer (and glmmTMB) by REML.
#
# Usage:  Rscript benchmarks/scaling_peers.R DATA.csv lme4|glmmTMB
#
# Times the fitting call only (system.time elapsed, one fit), as shared/reference/scaling.json
# does; reports the peak resident memory of this whole R process (VmHWM of /proc/self/status:
# packages, data and the fit). Prints one JSON object on stdout.

suppressPackageStartupMessages({
  library(jsonlite)
  library(lme4)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 2) stop("usage: Rscript scaling_peers.R DATA.csv lme4|glmmTMB")
d <- read.csv(args[[1]])
d$subject <- factor(d$subject)
form <- y ~ x1 + x2 + (x1 | subject)
if (args[[2]] == "lme4") {
  t <- system.time(fit <- lmer(form, d, REML = TRUE))[["elapsed"]]
  criterion <- unname(REMLcrit(fit))
  beta <- unname(fixef(fit))
  version <- as.character(packageVersion("lme4"))
} else {
  suppressPackageStartupMessages(library(glmmTMB))
  t <- system.time(fit <- glmmTMB(form, d, REML = TRUE))[["elapsed"]]
  criterion <- -2 * as.numeric(logLik(fit))
  beta <- unname(fixef(fit)$cond)
  version <- as.character(packageVersion("glmmTMB"))
}
hwm <- grep("^VmHWM", readLines("/proc/self/status"), value = TRUE)
peak_mb <- as.numeric(gsub("[^0-9]", "", hwm)) / 1024
cat(toJSON(list(software = args[[2]], version = version, R = R.version.string, time_s = t,
                criterion = criterion, fixef = beta,
                peak_rss_mb = peak_mb), auto_unbox = TRUE, digits = NA))
