# lme4 in a loop over the levels of a batch CSV: the peer of bench_commands.py's batch rows.
#
#   Rscript benchmarks/batch_peers.R DATA.csv "FORMULA" BY N_TIMED OUT.json
#
# Fits the first N_TIMED levels of column BY one by one with lmer (REML), after one untimed
# warm-up fit, and writes the mean fitting time per level (the lmer call only: reading and
# splitting the data are not counted) and each timed level's REML criterion.
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
csv <- args[1]; formula <- as.formula(args[2]); by <- args[3]; n_timed <- as.integer(args[4]); out <- args[5]
df <- read.csv(csv, stringsAsFactors = TRUE)
parts <- split(df, df[[by]])
levels <- names(parts)[seq_len(min(n_timed, length(parts)))]
invisible(lmer(formula, parts[[levels[1]]], REML = TRUE))  # warm-up: loads and byte-compiles lme4's code
crit <- numeric(length(levels))
t0 <- proc.time()[["elapsed"]]
for (i in seq_along(levels)) {
  fit <- lmer(formula, parts[[levels[i]]], REML = TRUE)
  crit[i] <- REMLcrit(fit)
}
elapsed <- proc.time()[["elapsed"]] - t0
write_json(list(engine = "lme4", version = as.character(packageVersion("lme4")), r = R.version.string,
                levels = levels, criterion = crit, n_timed = length(levels),
                seconds_per_fit = elapsed / length(levels)), out, digits = NA, auto_unbox = TRUE)
