## make_crossed_student_t.R -- glmmTMB reference for a crossed Student-t model (issue 13:
## crossed factors with the Student-t family).
##
## Run from the repository root:
##     Rscript tests/reference/make_crossed_student_t.R
##
## Simulates (set.seed(13)) 40 subjects x 12 items, each pair once with probability 0.85,
## y = 2 + 0.5 x + b_subj + b_item + 0.8 t_4 (SDs 1 and 0.7), writes it to
## tests/reference/data/crossed_t.csv, and fits
##     glmmTMB(y ~ x + (1 | subj) + (1 | item), family = t_family, REML = FALSE / TRUE)
## from glmmTMB's default start. Writes tests/reference/crossed_student_t.json: per method
## the logLik (-fit$fit$objective: the Laplace, or restricted Laplace, log-likelihood),
## fixef and their SEs (vcov: sdreport's), the random-effect SDs, sigma (the t scale) and
## the degrees of freedom, nlminb's convergence code and pdHess.
## Requires (Debian): r-base-core r-cran-glmmtmb r-cran-jsonlite. glmmTMB 1.1.5, R 4.2.2.

options(digits = 15, warn = 1, stringsAsFactors = FALSE)
suppressPackageStartupMessages({ library(glmmTMB); library(jsonlite) })
out_dir <- file.path("tests", "reference")
if (!dir.exists(out_dir)) stop("run from the repository root")

set.seed(13)
grid <- expand.grid(subj = 1:40, item = 1:12)
grid <- grid[runif(nrow(grid)) < 0.85, ]
b_subj <- rnorm(40, sd = 1)
b_item <- rnorm(12, sd = 0.7)
x <- rnorm(nrow(grid))
y <- 2 + 0.5 * x + b_subj[grid$subj] + b_item[grid$item] + 0.8 * rt(nrow(grid), df = 4)
d <- data.frame(y = y, x = x, subj = sprintf("s%02d", grid$subj), item = sprintf("i%02d", grid$item))
write.csv(d, file.path(out_dir, "data", "crossed_t.csv"), row.names = FALSE)
d <- read.csv(file.path(out_dir, "data", "crossed_t.csv"))

named <- function(v) as.list(setNames(unname(v), names(v)))
fits <- list()
for (reml in c(FALSE, TRUE)) {
  fit <- glmmTMB(y ~ x + (1 | subj) + (1 | item), data = d, family = t_family, REML = reml)
  vc <- VarCorr(fit)$cond
  fits[[if (reml) "REML" else "ML"]] <- list(
    r_call = sprintf("glmmTMB(y ~ x + (1 | subj) + (1 | item), data = d, family = t_family, REML = %s)", reml),
    logLik = -fit$fit$objective, fixef = named(fixef(fit)$cond),
    fixef_se = named(sqrt(diag(vcov(fit)$cond))),
    sd = list(subj = unname(attr(vc$subj, "stddev")), item = unname(attr(vc$item, "stddev"))),
    sigma = sigma(fit), df = unname(family_params(fit)[["Student-t df"]]),
    nlminb_code = fit$fit$convergence, pdHess = isTRUE(fit$sdr$pdHess))
}
write(toJSON(list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                  data = "data/crossed_t.csv", formula = "y ~ x + (1 | subj) + (1 | item)", fits = fits),
             auto_unbox = TRUE, digits = NA, pretty = TRUE),
      file.path(out_dir, "crossed_student_t.json"))
