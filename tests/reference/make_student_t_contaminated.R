## make_student_t_contaminated.R -- glmmTMB Student-t fits of contaminated sleepstudy data,
## best of several starts, for tests/test_student_t_contaminated.py (issue 11, point 5).
##
## Run from the repository root:
##     Rscript tests/reference/make_student_t_contaminated.R
##
## Reads tests/reference/data/student_t_contaminated.csv (the data of record, written by
## tests/reference/make_student_t_contaminated_data.py: 16 datasets, lme4::sleepstudy with
## 3-10% of the reaction times shifted by 150-300 ms up, down or both), fits
##     glmmTMB(Reaction ~ Days + (Days | Subject), data = d, family = t_family, REML = ...)
## by ML and REML from glmmTMB's default start and from a grid of starts for the scale
## (betad = log sigma) and the degrees of freedom (psi = log df), and keeps glmmTMB's best:
## the highest logLik among the converged fits (nlminb convergence 0, positive-definite
## Hessian, finite logLik). Writes tests/reference/student_t_contaminated.json.
##
## glmmTMB's Student-t likelihood is the Laplace approximation (TMB), with the inner
## optimisation warm-started from the previous evaluation's modes; REML integrates the
## fixed effects out with the random effects (TMB's random = c("b", "beta")).
##
## Requires (Debian): r-base-core r-cran-glmmtmb r-cran-jsonlite.

options(digits = 15, warn = 1, stringsAsFactors = FALSE)
invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages({
  library(glmmTMB)
  library(jsonlite)
})

out_dir <- file.path("tests", "reference")
csv <- file.path(out_dir, "data", "student_t_contaminated.csv")
if (!file.exists(csv))
  stop("run from the repository root, after make_student_t_contaminated_data.py: ", csv, " is missing")

SCRIPT <- "tests/reference/make_student_t_contaminated.R"
FORMULA <- "Reaction ~ Days + (Days | Subject)"
SIGMA_STARTS <- c(5, 10, 20, 50)
DF_STARTS <- c(1, 2, 4, 10, 30)

pkgv <- function(p) as.character(packageVersion(p))
r_versions <- list(
  R = R.version.string, platform = R.version$platform,
  glmmTMB = pkgv("glmmTMB"), TMB = pkgv("TMB"), Matrix = pkgv("Matrix"), jsonlite = pkgv("jsonlite"),
  BLAS = tryCatch(extSoftVersion()[["BLAS"]], error = function(e) ""),
  LAPACK = tryCatch(La_library(), error = function(e) ""), LAPACK_version = La_version(),
  glmmTMB_cores = getOption("glmmTMB.cores", 1L))

capture <- function(expr) {
  ws <- character(0); ms <- character(0); err <- NULL
  val <- tryCatch(withCallingHandlers(expr,
    warning = function(w) { ws <<- c(ws, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { ms <<- c(ms, sub("\n$", "", conditionMessage(m))); invokeRestart("muffleMessage") }),
    error = function(e) { err <<- conditionMessage(e); NULL })
  list(value = val, warnings = unique(ws), messages = ms, error = err)
}

named <- function(x) as.list(setNames(as.numeric(x), names(x)))

read_code <- sprintf('tab <- read.csv("%s", colClasses = c(Subject = "character"))', csv)
eval(parse(text = read_code))
md5 <- unname(tools::md5sum(csv))

## one fit's record; `fit` is NULL when glmmTMB stopped with an error
summarise_fit <- function(cap, start) {
  fit <- cap$value
  if (is.null(fit))
    return(list(start = start, ok = FALSE, error = cap$error, converged = FALSE,
                fit_warnings = I(cap$warnings)))
  pdH <- isTRUE(fit$sdr$pdHess)
  ll <- -fit$fit$objective          # logLik() is NA where the Hessian is not positive definite
  list(start = start, ok = TRUE, error = NULL,
       logLik = ll, nlminb_code = fit$fit$convergence, nlminb_message = fit$fit$message,
       iterations = fit$fit$iterations, pdHess = pdH,
       converged = identical(as.integer(fit$fit$convergence), 0L) && pdH && is.finite(ll),
       sigma = sigma(fit), df = unname(family_params(fit)[["Student-t df"]]),
       fit_warnings = I(cap$warnings))
}

## every start's outcome, one column per field (one entry per start, in order)
columns <- function(runs) {
  col <- function(f, default = NA) vapply(runs, function(r) { v <- r[[f]]; if (is.null(v)) default else v },
                                         if (is.character(default)) "" else if (is.logical(default)) TRUE else 0)
  list(start = I(vapply(runs, function(r) if (is.character(r$start)) r$start else
                 sprintf("sigma = %g, df = %g", r$start$sigma, r$start$df), "")),
       logLik = I(col("logLik", NA_real_)), nlminb_code = I(col("nlminb_code", NA_real_)),
       pdHess = I(col("pdHess", NA)), converged = I(col("converged", FALSE)),
       sigma = I(col("sigma", NA_real_)), df = I(col("df", NA_real_)),
       error = I(col("error", NA_character_)),
       warnings = I(vapply(runs, function(r) paste(r$fit_warnings, collapse = "; "), "")))
}

## the best fit's full record
best_record <- function(fit, cap, start, call_str, all) {
  V <- vcov(fit)$cond
  vc <- VarCorr(fit)$cond$Subject
  cv <- unname(unclass(vc)[, , drop = FALSE])
  sd <- sqrt(diag(cv))
  re <- ranef(fit)$cond$Subject
  re <- re[sort(rownames(re), method = "radix"), , drop = FALSE]
  par <- fit$fit$par
  list(
    r_call = call_str, start = start,
    logLik = -fit$fit$objective, logLik_reported = as.numeric(logLik(fit)),
    fixef = named(fixef(fit)$cond),
    fixef_se = named(setNames(sqrt(diag(V)), names(fixef(fit)$cond))),
    sigma = sigma(fit), df = unname(family_params(fit)[["Student-t df"]]),
    G = list(terms = I(colnames(vc)), cov = cv, sd = I(sd), corr = cov2cor(cv)),
    par_internal = list(names = I(names(par)), values = I(unname(par))),
    ranef = list(levels = I(rownames(re)), terms = I(colnames(re)), values = unname(as.matrix(re))),
    converged = TRUE,
    convergence = list(nlminb_code = fit$fit$convergence, nlminb_message = fit$fit$message,
                       iterations = fit$fit$iterations, pdHess = isTRUE(fit$sdr$pdHess)),
    fit_warnings = I(cap$warnings), fit_messages = I(cap$messages),
    n_starts = length(all), n_converged = sum(vapply(all, function(r) isTRUE(r$converged), TRUE)),
    logLik_other_converged = I(sort(unique(round(unlist(lapply(all, function(r)
      if (isTRUE(r$converged)) r$logLik)), 6)), decreasing = TRUE)))
}

starts <- c(list(NULL), unlist(lapply(DF_STARTS, function(nu) lapply(SIGMA_STARTS, function(s)
  list(sigma = s, df = nu))), recursive = FALSE))

datasets <- list()
for (k in sort(unique(tab$dataset))) {
  d <- tab[tab$dataset == k, c("Reaction", "Days", "Subject")]
  d$Subject <- factor(d$Subject, levels = sort(unique(d$Subject), method = "radix"))
  methods <- list()
  for (method in c("ML", "REML")) {
    reml <- method == "REML"
    runs <- list(); fits <- list(); caps <- list(); call_strs <- character(0)
    for (i in seq_along(starts)) {
      s <- starts[[i]]
      start_arg <- if (is.null(s)) "" else
        sprintf(", start = list(betad = log(%g), psi = log(%g))", s$sigma, s$df)
      call_str <- sprintf("glmmTMB(%s, data = d, family = t_family, REML = %s%s)", FORMULA, reml, start_arg)
      cap <- capture(eval(parse(text = call_str)))
      runs[[i]] <- summarise_fit(cap, if (is.null(s)) "glmmTMB default" else s)
      fits[[i]] <- cap$value; caps[[i]] <- cap; call_strs[i] <- call_str
    }
    ll <- vapply(runs, function(r) if (isTRUE(r$converged)) r$logLik else -Inf, 0)
    if (any(is.finite(ll))) {
      b <- which.max(ll)
      best <- best_record(fits[[b]], caps[[b]], runs[[b]]$start, call_strs[b], runs)
      cat(sprintf("dataset %2d %-4s best logLik %.6f (start %d of %d; %d converged), sigma %.4g, df %.4g; default: %s\n",
                  k, method, best$logLik, b, length(runs), best$n_converged, best$sigma, best$df,
                  if (isTRUE(runs[[1]]$converged)) sprintf("%.6f", runs[[1]]$logLik) else "not converged"))
    } else {
      best <- list(converged = FALSE, n_starts = length(runs), n_converged = 0L,
                   note = "no start converged (nlminb code 0 with a positive-definite Hessian)")
      cat(sprintf("dataset %2d %-4s no start of %d converged\n", k, method, length(runs)))
    }
    best$default_start <- columns(runs[1])
    best$all_starts <- columns(runs)
    methods[[method]] <- best
  }
  sub <- tab[tab$dataset == k, ]
  datasets[[as.character(k)]] <- list(
    n_outliers = sum(sub$outlier != 0), n_up = sum(sub$outlier > 0), n_down = sum(sub$outlier < 0),
    fits = methods)
}

obj <- list(
  case = "student_t_contaminated", data_file = csv, data_md5 = md5,
  data_generated_by = ".venv/bin/python tests/reference/make_student_t_contaminated_data.py",
  formula = FORMULA, family = "t_family (glmmTMB; Laplace approximation)",
  r_read_data = read_code,
  r_select_dataset = paste('d <- tab[tab$dataset == k, c("Reaction", "Days", "Subject")];',
                           'd$Subject <- factor(d$Subject, levels = sort(unique(d$Subject), method = "radix"))'),
  starts = list(default = "glmmTMB's own start", grid = "betad = log(sigma), psi = log(df)",
                sigma = I(SIGMA_STARTS), df = I(DF_STARTS)),
  best_rule = paste("highest logLik (= -fit$fit$objective) among the fits with nlminb convergence 0,",
                    "sdr$pdHess TRUE and a finite objective"),
  note = paste("logLik is the Laplace (ML) or restricted Laplace (REML) log-likelihood with the",
               "constants included; fixef_se from vcov(fit)$cond; sigma = sigma(fit), the Student-t",
               "scale; df = family_params(fit); G = VarCorr(fit)$cond$Subject; ranef = conditional",
               "modes (ranef(fit)$cond$Subject), levels in C-locale order."),
  datasets = datasets,
  r_versions = r_versions,
  generated_by = paste0("Rscript ", SCRIPT, " (run from the repository root)"),
  generated_on = format(Sys.Date()))
js <- toJSON(obj, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null")
writeLines(js, file.path(out_dir, "student_t_contaminated.json"))
