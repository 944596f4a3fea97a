# Peer fits for benchmarks/bench_crossed.py: lme4::lmer on crossed designs.
#
# Usage:  Rscript benchmarks/crossed_peers.R export OUT.csv      (writes lme4::InstEval)
#         Rscript benchmarks/crossed_peers.R fit DATA.csv FORMULA REML|ML
#
# `fit` times lmer(FORMULA) (system.time elapsed, one fit, the fitting call only; the
# columns other than y and x are factors, service as in InstEval) and reports the peak
# resident memory of the whole R process (VmHWM of /proc/self/status). Prints one JSON
# object on stdout.

suppressPackageStartupMessages({ library(jsonlite); library(lme4) })
args <- commandArgs(trailingOnly = TRUE)
if (args[[1]] == "export") {
  d <- lme4::InstEval
  out <- data.frame(y = d$y, s = as.character(d$s), d = as.character(d$d),
                    dept = as.character(d$dept), service = as.integer(d$service == "1"))
  write.csv(out, args[[2]], row.names = FALSE)
  quit(save = "no")
}
d <- read.csv(args[[2]], colClasses = "character")
d$y <- as.numeric(d$y)
if ("x" %in% names(d)) d$x <- as.numeric(d$x)
for (col in setdiff(names(d), c("y", "x"))) d[[col]] <- factor(d[[col]])
reml <- args[[4]] == "REML"
t <- system.time(fit <- lmer(as.formula(args[[3]]), d, REML = reml))[["elapsed"]]
status <- readLines("/proc/self/status")
hwm <- as.numeric(gsub("[^0-9]", "", status[grepl("^VmHWM", status)])) / 1024
vc <- as.data.frame(VarCorr(fit))
cat(toJSON(list(time_s = t, peak_mb = hwm, criterion = if (reml) unname(REMLcrit(fit)) else deviance(fit),
                beta = unname(fixef(fit)), sd = setNames(as.list(vc$sdcor), vc$grp),
                version = as.character(packageVersion("lme4"))), auto_unbox = TRUE, digits = NA))
