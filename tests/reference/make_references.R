## make_references.R -- reference fits from lme4 / glmmTMB for the admbjax tests.
##
## Run from the repository root:
##     Rscript tests/reference/make_references.R
##
## For every case it writes the data set to tests/reference/data/<case>.csv
## (write.csv, row.names = FALSE, factor columns as quoted strings unless noted),
## reads that CSV back, fits the models from the read-back data, and writes
## tests/reference/<case>.json in the field layout of shared/reference/sleepstudy.json.
##
## Factor coding rule (same as shared/reference): levels sorted in C-locale order of
## the CSV strings; contr.treatment (first level is the reference level).
##
## Requires (Debian): r-base-core r-cran-lme4 r-cran-glmmtmb r-cran-jsonlite
## (r-cran-nlme, r-cran-mass come with them).

options(digits = 15, warn = 1, stringsAsFactors = FALSE)
invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})

out_dir <- file.path("tests", "reference")
data_dir <- file.path(out_dir, "data")
if (!dir.exists(out_dir))
  stop("run from the repository root: Rscript tests/reference/make_references.R")
dir.create(data_dir, showWarnings = FALSE, recursive = TRUE)

SCRIPT <- "tests/reference/make_references.R"

## ------------------------------------------------------------------ helpers
csort <- function(x) sort(unique(as.character(x)), method = "radix")  # C-locale order

pkgv <- function(p) as.character(packageVersion(p))
blas_desc <- function() {
  b <- tryCatch(extSoftVersion()[["BLAS"]], error = function(e) "")
  l <- tryCatch(La_library(), error = function(e) "")
  list(BLAS = b, LAPACK = l, LAPACK_version = La_version())
}
r_versions <- c(list(
  R = R.version.string,
  platform = R.version$platform,
  lme4 = pkgv("lme4"),
  glmmTMB = pkgv("glmmTMB"),
  TMB = pkgv("TMB"),
  Matrix = pkgv("Matrix"),
  nlme = pkgv("nlme"),
  jsonlite = pkgv("jsonlite")),
  blas_desc(),
  list(glmmTMB_cores = getOption("glmmTMB.cores", 1L)))

capture <- function(expr) {
  ws <- character(0); ms <- character(0)
  val <- withCallingHandlers(expr,
    warning = function(w) { ws <<- c(ws, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { ms <<- c(ms, sub("\n$", "", conditionMessage(m))); invokeRestart("muffleMessage") })
  list(value = val, warnings = ws, messages = ms)
}

num <- function(x) { x <- unname(x); if (length(x) == 0) NULL else as.numeric(x) }
named <- function(x) as.list(setNames(as.numeric(x), names(x)))
mat <- function(m) unname(as.matrix(m))

## build per-grouping-factor G from a list of (group name, covariance block) pairs
build_G <- function(blocks) {
  out <- list()
  for (g in unique(vapply(blocks, `[[`, "", "group"))) {
    bl <- Filter(function(b) b$group == g, blocks)
    terms <- unlist(lapply(bl, function(b) b$terms))
    q <- length(terms)
    cv <- matrix(0, q, q)
    k <- 0
    for (b in bl) {
      qb <- length(b$terms)
      cv[k + seq_len(qb), k + seq_len(qb)] <- as.matrix(b$cov)
      k <- k + qb
    }
    sd <- sqrt(diag(cv))
    cr <- cv / outer(sd, sd)
    diag(cr) <- 1
    structure <- if (q == 1) "scalar" else if (length(bl) == 1) "unstructured (correlated)" else
      if (all(vapply(bl, function(b) length(b$terms), 1L) == 1)) "diagonal (uncorrelated)" else "block-diagonal"
    out[[g]] <- list(terms = I(terms), cov = cv, sd = I(sd), corr = cr, structure = structure)
  }
  out
}

## conditional modes (and conditional SDs) of the first three levels (C-locale order)
ranef_first3 <- function(re_df, postvar = NULL) {
  lv <- head(csort(rownames(re_df)), 3)
  idx <- match(lv, rownames(re_df))
  vals <- unname(as.matrix(re_df[idx, , drop = FALSE]))
  res <- list(levels = I(lv), terms = I(colnames(re_df)), values = vals)
  sdres <- NULL
  if (!is.null(postvar)) {
    pvs <- if (is.list(postvar)) postvar else list(postvar)
    sds <- t(vapply(idx, function(k) {
      unlist(lapply(pvs, function(pv) {
        q <- dim(pv)[1]
        sqrt(diag(matrix(pv[, , k], q, q)))
      }))
    }, numeric(ncol(re_df))))
    if (ncol(re_df) == 1) sds <- matrix(sds, ncol = 1)
    sdres <- list(levels = I(lv), terms = I(colnames(re_df)), values = unname(sds))
  }
  list(modes = res, condsd = sdres)
}

## exact marginal log-likelihood (adaptive 1-D quadrature with integrate()) of a
## Poisson GLMM with one scalar random intercept, evaluated at given estimates
poisson_ri_exact_loglik <- function(y, eta_fixed, group, sd_b) {
  tot <- 0
  for (g in unique(group)) {
    yi <- y[group == g]; ei <- eta_fixed[group == g]
    lf <- function(b) sum(dpois(yi, exp(ei + b), log = TRUE)) + dnorm(b, 0, sd_b, log = TRUE)
    op <- optimize(lf, c(-30 * sd_b - 10, 30 * sd_b + 10), maximum = TRUE, tol = 1e-12)
    m <- op$maximum; lmax <- op$objective
    h <- 1e-4
    curv <- -(lf(m + h) - 2 * lmax + lf(m - h)) / h^2
    psd <- 1 / sqrt(max(curv, 1e-12))
    f <- function(b) exp(vapply(b, lf, 0) - lmax)
    I1 <- integrate(f, m - 20 * psd, m + 20 * psd, subdivisions = 2000L,
                    rel.tol = 1e-13, abs.tol = 0)$value
    tot <- tot + lmax + log(I1)
  }
  tot
}

## Laplace approximation of the same marginal log-likelihood, computed independently
## (Newton iterations for each group's conditional mode; observed = expected
## information for the canonical log link), evaluated at given estimates
poisson_ri_laplace_loglik <- function(y, eta_fixed, group, sd_b) {
  tot <- 0
  for (g in unique(group)) {
    yi <- y[group == g]; ei <- eta_fixed[group == g]
    b <- 0
    for (it in 1:200) {
      mu <- exp(ei + b)
      step <- (sum(yi - mu) - b / sd_b^2) / (sum(mu) + 1 / sd_b^2)
      b <- b + step
      if (abs(step) < 1e-14) break
    }
    h <- sum(exp(ei + b)) + 1 / sd_b^2
    tot <- tot + sum(dpois(yi, exp(ei + b), log = TRUE)) + dnorm(b, 0, sd_b, log = TRUE) +
      0.5 * log(2 * pi) - 0.5 * log(h)
  }
  tot
}

CONDSD_NOTE_LME4 <- paste(
  "ranef_condsd_first3: sqrt of the diagonal of attr(ranef(fit, condVar = TRUE)[[g]], 'postVar'),",
  "the conditional variance of the random effects given the data with the estimated parameters treated as known.")
CONDSD_NOTE_TMB <- paste(
  "ranef_condsd_first3: sqrt of the diagonal of attr(ranef(fit, condVar = TRUE)$cond[[g]], 'condVar'),",
  "i.e. TMB sdreport prediction SDs of the random effects, which INCLUDE the uncertainty of the estimated",
  "fixed parameters; therefore larger than lme4's postVar and not directly comparable with it.")

## ------------------------------------------------------------------ extractors
extract_lme4 <- function(fit, cap, id, formula, call_str, method) {
  is_glmer <- is(fit, "glmerMod")
  vc <- VarCorr(fit)
  cnms <- getME(fit, "cnms")
  blocks <- lapply(seq_along(vc), function(i)
    list(group = names(cnms)[i], terms = cnms[[i]], cov = unclass(vc[[i]])[, , drop = FALSE]))
  G <- build_G(blocks)
  ll <- logLik(fit)
  reml <- isREML(fit)
  crit <- if (reml) unname(fit@devcomp$cmp[["REML"]]) else -2 * as.numeric(ll)
  re <- ranef(fit, condVar = TRUE)
  rf <- list(); rsd <- list()
  for (g in names(re)) {
    r3 <- ranef_first3(re[[g]], attr(re[[g]], "postVar"))
    rf[[g]] <- r3$modes; rsd[[g]] <- r3$condsd
  }
  conv <- fit@optinfo$conv
  lme4_msgs <- as.character(unlist(conv$lme4$messages))
  optw <- as.character(unlist(fit@optinfo$warnings))
  nonsing <- lme4_msgs[!grepl("singular", lme4_msgs)]
  conv_warn <- cap$warnings[grepl("converge|Hessian|gradient|eigenvalue", cap$warnings, ignore.case = TRUE)]
  converged <- identical(as.integer(conv$opt), 0L) && length(nonsing) == 0 &&
    length(optw) == 0 && length(conv_warn) == 0
  sig <- if (is_glmer) NULL else sigma(fit)
  out <- list(
    id = id, software = "lme4", software_version = pkgv("lme4"),
    fun = if (is_glmer) "glmer" else "lmer",
    formula = formula, family = family(fit)$family, method = method,
    r_call = call_str, ok = TRUE,
    fixef = named(fixef(fit)),
    fixef_se = named(setNames(sqrt(diag(as.matrix(vcov(fit)))), names(fixef(fit)))),
    vcov_fixef = mat(vcov(fit)),
    G = G,
    sigma2 = if (is.null(sig)) NULL else sig^2,
    sigma = sig,
    logLik = as.numeric(ll), logLik_is_REML = reml, logLik_df = attr(ll, "df"),
    criterion_name = if (reml) "REML criterion at convergence" else "deviance (-2 logLik)",
    criterion = crit, minus2logLik = -2 * as.numeric(ll),
    AIC = if (reml) NULL else AIC(fit), BIC = if (reml) NULL else BIC(fit),
    nobs = nobs(fit), ngroups = as.list(ngrps(fit)),
    ranef_first3 = rf, ranef_condsd_first3 = rsd, ranef_condsd_note = CONDSD_NOTE_LME4,
    singular_lme4 = isSingular(fit),
    theta_lme4 = named(getME(fit, "theta")),
    converged = converged,
    optimizer = as.character(fit@optinfo$optimizer),
    feval = fit@optinfo$feval,
    convergence = list(opt_code = conv$opt, lme4_messages = I(lme4_msgs),
                       optinfo_warnings = I(optw)),
    fit_warnings = I(cap$warnings), fit_messages = I(cap$messages))
  out
}

extract_glmmTMB <- function(fit, cap, id, formula, call_str, method) {
  vc <- VarCorr(fit)$cond
  blocks <- lapply(names(vc), function(g)
    list(group = g, terms = colnames(vc[[g]]), cov = unclass(vc[[g]])[, , drop = FALSE]))
  G <- build_G(blocks)
  ll <- logLik(fit)
  re <- ranef(fit, condVar = TRUE)$cond
  rf <- list(); rsd <- list()
  for (g in names(re)) {
    r3 <- ranef_first3(re[[g]], attr(re[[g]], "condVar"))
    rf[[g]] <- r3$modes; rsd[[g]] <- r3$condsd
  }
  fe <- fixef(fit)$cond
  V <- vcov(fit)$cond
  fam <- family(fit)$family
  gauss <- fam == "gaussian"
  reml <- isTRUE(fit$modelInfo$REML)
  par <- fit$fit$par
  names(par) <- make.unique(names(par))
  pdH <- isTRUE(fit$sdr$pdHess)
  converged <- identical(as.integer(fit$fit$convergence), 0L) && pdH
  list(
    id = id, software = "glmmTMB", software_version = pkgv("glmmTMB"),
    fun = "glmmTMB", formula = formula, family = fam, method = method,
    r_call = call_str, ok = TRUE,
    fixef = named(fe),
    fixef_se = named(setNames(sqrt(diag(V)), names(fe))),
    vcov_fixef = mat(V),
    G = G,
    sigma2 = if (gauss) sigma(fit)^2 else NULL,
    sigma = if (gauss) sigma(fit) else NULL,
    logLik = as.numeric(ll), logLik_is_REML = reml, logLik_df = attr(ll, "df"),
    criterion_name = if (reml) "-2 REML logLik (glmmTMB)" else "deviance (-2 logLik)",
    criterion = -2 * as.numeric(ll), minus2logLik = -2 * as.numeric(ll),
    AIC = if (reml) NULL else AIC(fit), BIC = if (reml) NULL else BIC(fit),
    nobs = nobs(fit), ngroups = as.list(vapply(fit$modelInfo$reTrms$cond$flist, nlevels, 1L)),
    ranef_first3 = rf, ranef_condsd_first3 = rsd, ranef_condsd_note = CONDSD_NOTE_TMB,
    singular_lme4 = NULL,
    converged = converged, optimizer = "nlminb",
    convergence = list(nlminb_code = fit$fit$convergence, nlminb_message = fit$fit$message,
                       iterations = fit$fit$iterations, pdHess = pdH),
    par_internal = as.list(par), objective = fit$fit$objective,
    fit_warnings = I(cap$warnings), fit_messages = I(cap$messages))
}

## ------------------------------------------------------------------ case driver
## spec: name, formula, data (data.frame as it goes to the CSV), string_cols,
##       numeric_factor_cols (numbers in the CSV, factors in the fit),
##       fits = list of list(id, call, method), origin, license, note, expect_md5
run_case <- function(spec) {
  name <- spec$name
  csv <- file.path(data_dir, paste0(name, ".csv"))
  write.csv(spec$data, csv, row.names = FALSE)
  md5 <- unname(tools::md5sum(csv))
  if (!is.null(spec$expect_md5) && md5 != spec$expect_md5)
    stop(name, ": CSV md5 ", md5, " differs from expected ", spec$expect_md5)

  ## code that reads the CSV back and codes the factors (stored verbatim in the JSON)
  sc <- spec$string_cols; nf <- spec$numeric_factor_cols
  rc <- sprintf('d <- read.csv("%s", colClasses = c(%s))', csv,
                paste(sprintf('%s = "character"', sc), collapse = ", "))
  for (v in c(sc, nf))
    rc <- c(rc, sprintf('d$%s <- factor(as.character(d$%s), levels = sort(unique(as.character(d$%s)), method = "radix"))', v, v, v))
  read_code <- paste(rc, collapse = "; ")
  env <- new.env(parent = globalenv())
  eval(parse(text = read_code), envir = env)
  d <- env$d
  ## round-trip check of the numeric columns against the in-memory data
  for (v in setdiff(names(spec$data), c(sc, nf)))
    stopifnot(isTRUE(all.equal(as.numeric(spec$data[[v]]), as.numeric(d[[v]]), tolerance = 1e-14)))

  fc <- list()
  for (v in c(sc, nf)) {
    lv <- levels(d[[v]])
    fc[[v]] <- list(n_levels = length(lv), first_levels = I(head(lv, 5)), levels = I(lv),
                    reference_level = lv[1],
                    csv_type = if (v %in% nf) "number (must be declared categorical, e.g. --categorical)" else "string")
  }

  fits <- list(); calls <- list()
  for (f in spec$fits) {
    cat(sprintf("[%s] %s: %s\n", name, f$id, f$call))
    cap <- capture(eval(parse(text = f$call), envir = env))
    fit <- cap$value
    res <- if (inherits(fit, "glmmTMB"))
      extract_glmmTMB(fit, cap, f$id, spec$formula, f$call, f$method)
    else extract_lme4(fit, cap, f$id, spec$formula, f$call, f$method)
    if (!is.null(spec$exact_poisson_ri)) {
      X <- model.matrix(lme4::nobars(as.formula(spec$formula)), d)
      fe <- unlist(res$fixef)
      stopifnot(identical(colnames(X), names(fe)))
      g <- names(res$G)[1]
      yv <- d[[spec$exact_poisson_ri$y]]; eta <- drop(X %*% fe); sdb <- as.numeric(unclass(res$G[[g]]$sd))[1]
      res$logLik_exact_at_estimates <- poisson_ri_exact_loglik(yv, eta, d[[g]], sdb)
      res$logLik_laplace_at_estimates <- poisson_ri_laplace_loglik(yv, eta, d[[g]], sdb)
      res$logLik_check_note <- paste(
        "Computed by make_references.R at this fit's estimates (fixef, G sd):",
        "logLik_exact_at_estimates = marginal log-likelihood by 1-D adaptive quadrature",
        "(stats::integrate per group, rel.tol 1e-13); logLik_laplace_at_estimates = Laplace",
        "approximation recomputed independently (Newton for each conditional mode).",
        "Compare logLik with logLik_laplace_at_estimates to see the accuracy of the software's own Laplace evaluation.")
    }
    for (w in res$fit_warnings) cat("   warning:", w, "\n")
    for (m in res$fit_messages) cat("   message:", m, "\n")
    fits[[f$id]] <- res
    calls[[f$id]] <- f$call
  }

  lap <- Filter(Negate(is.null), lapply(fits, function(r) if (!is.null(r$logLik_laplace_at_estimates))
    list(reported_minus2logLik = r$minus2logLik,
         recomputed_laplace_minus2logLik = -2 * r$logLik_laplace_at_estimates,
         difference = r$minus2logLik + 2 * r$logLik_laplace_at_estimates,
         exact_minus2logLik = -2 * r$logLik_exact_at_estimates)))
  laplace_check <- if (length(lap)) c(lap, list(note = paste(
    "difference = software's reported -2logLik minus an independent Laplace evaluation at the same",
    "estimates. glmmTMB's (TMB) Laplace matches to rounding; lme4's glmer value can be off by up to",
    "~1e-3 (its PIRLS-based evaluation), so glmer's estimates are not exactly the Laplace optimum.",
    "A Laplace engine should match glmmTMB closely and glmer only to a looser tolerance."))) else NULL

  obj <- list(
    case = name, set = "tests/reference", data_file = csv,
    formula = spec$formula, note = spec$note, truth = NULL,
    data_md5 = md5, nrow = nrow(d), ncol = ncol(d), columns = I(names(d)),
    factor_coding = list(
      rule = "levels sorted in C-locale order of the CSV strings; contr.treatment (first level is reference)",
      factors = fc),
    data_origin = spec$origin, data_license = spec$license,
    r_read_data = read_code, r_calls = calls,
    laplace_check = laplace_check,
    fits = fits,
    r_versions = r_versions,
    generated_by = paste0("Rscript ", SCRIPT, " (run from the repository root)"),
    generated_on = format(Sys.Date()))
  js <- toJSON(obj, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null")
  writeLines(js, file.path(out_dir, paste0(name, ".json")))
  invisible(obj)
}

lmm_fits <- function(fml) list(
  list(id = "lme4_lmer_REML", method = "REML",
       call = sprintf("lmer(%s, data = d, REML = TRUE)", fml)),
  list(id = "lme4_lmer_ML", method = "ML",
       call = sprintf("lmer(%s, data = d, REML = FALSE)", fml)))
pois_fits <- function(fml) list(
  list(id = "lme4_glmer_Laplace", method = "ML (Laplace, nAGQ=1)",
       call = sprintf("glmer(%s, data = d, family = poisson)", fml)),
  list(id = "glmmTMB_Laplace", method = "ML (Laplace)",
       call = sprintf("glmmTMB(%s, data = d, family = poisson)", fml)))

lic_lme4 <- sprintf("shipped in R package lme4 %s (%s)", pkgv("lme4"), packageDescription("lme4")$License)

## ------------------------------------------------------------------ cases
## dyestuff
d <- lme4::Dyestuff
d <- data.frame(Yield = as.numeric(d$Yield), Batch = as.character(d$Batch))
f <- "Yield ~ 1 + (1 | Batch)"
run_case(list(name = "dyestuff", formula = f, data = d, string_cols = "Batch",
  fits = lmm_fits(f),
  origin = "lme4::Dyestuff: yield of dyestuff (grams of standard colour), 6 batches x 5 preparations, 30 rows; Davies & Goldsmith (1972) Statistical Methods in Research and Production, 4th ed.",
  license = lic_lme4, note = "Batch written as strings A-F."))

## orthodont / orthodont_sex
o <- nlme::Orthodont
d <- data.frame(distance = as.numeric(o$distance), age = as.numeric(o$age),
                Subject = as.character(o$Subject), Sex = as.character(o$Sex))
orig_o <- sprintf("nlme::Orthodont (nlme %s): distance (mm) from pituitary to pterygomaxillary fissure, 27 children x ages 8,10,12,14, 108 rows; Potthoff & Roy (1964) Biometrika 51:313-326; Pinheiro & Bates (2000)", pkgv("nlme"))
lic_o <- sprintf("shipped in R package nlme (%s)", packageDescription("nlme")$License)
f <- "distance ~ age + (age | Subject)"
run_case(list(name = "orthodont", formula = f, data = d, string_cols = c("Subject", "Sex"),
  fits = lmm_fits(f), origin = orig_o, license = lic_o,
  note = "Subject (ordered factor in nlme) and Sex written as plain strings."))
f <- "distance ~ age * Sex + (1 | Subject)"
run_case(list(name = "orthodont_sex", formula = f, data = d, string_cols = c("Subject", "Sex"),
  fits = lmm_fits(f), origin = orig_o, license = lic_o,
  note = paste("Sex read as strings and coded with C-locale sorted levels (Female, Male), so the",
               "reference level is Female and the coefficients are SexMale and age:SexMale.",
               "(nlme's own factor has levels Male, Female, which would give SexFemale.)")))

## chickweight
cw <- datasets::ChickWeight
d <- data.frame(weight = as.numeric(cw$weight), Time = as.numeric(cw$Time),
                Chick = as.character(cw$Chick), Diet = as.integer(as.character(cw$Diet)))
f <- "weight ~ Time + Diet + (1 | Chick)"
run_case(list(name = "chickweight", formula = f, data = d, string_cols = "Chick",
  numeric_factor_cols = "Diet", fits = lmm_fits(f),
  origin = "datasets::ChickWeight: body weight (g) of 50 chicks on 4 diets, days 0-21, 578 rows; Crowder & Hand (1990) Analysis of Repeated Measures, Example 5.3",
  license = sprintf("R datasets package (%s; R is GPL-2 | GPL-3)", packageDescription("datasets")$License),
  note = paste("Diet is written to the CSV as an integer 1..4 and must be treated as categorical",
               "(e.g. --categorical Diet); in R it is factor(Diet) with levels 1,2,3,4 (reference 1).",
               "Chick (ordered factor in R) written as plain strings.")))

## sleepstudy_uncorr (byte-identical to shared/data/sleepstudy.csv)
ss <- lme4::sleepstudy
d <- data.frame(Reaction = ss$Reaction, Days = ss$Days, Subject = as.character(ss$Subject))
f <- "Reaction ~ Days + (Days || Subject)"
run_case(list(name = "sleepstudy_uncorr", formula = f, data = d, string_cols = "Subject",
  fits = lmm_fits(f), expect_md5 = "22004b6706cc06f501edc10d4d4478bf",
  origin = "lme4::sleepstudy: reaction times over 10 days of sleep restriction, 18 subjects, 180 rows; Belenky et al. (2003) J. Sleep Res. 12:1-12",
  license = lic_lme4,
  note = paste("CSV is byte-identical to shared/data/sleepstudy.csv (md5 checked).",
               "(Days || Subject) = (1 | Subject) + (0 + Days | Subject): independent intercept and slope;",
               "G is reported per grouping factor as a 2x2 diagonal matrix.")))

## salamanders
s <- glmmTMB::Salamanders
d <- data.frame(count = as.integer(s$count), mined = as.character(s$mined), site = as.character(s$site))
f <- "count ~ mined + (1 | site)"
run_case(list(name = "salamanders", formula = f, data = d, string_cols = c("mined", "site"),
  fits = pois_fits(f), exact_poisson_ri = list(y = "count"),
  origin = sprintf("glmmTMB::Salamanders (glmmTMB %s): counts of stream salamanders, 23 sites, 644 rows (only count, mined, site kept); Price et al. (2016) J. Appl. Ecol. 53:459-468", pkgv("glmmTMB")),
  license = sprintf("shipped in R package glmmTMB (%s)", packageDescription("glmmTMB")$License),
  note = paste("mined coded with C-locale sorted levels (no, yes): reference 'no', coefficient minedyes",
               "(glmmTMB's own factor has levels yes, no). Poisson, log link.")))

## grouseticks
gt <- lme4::grouseticks
d <- data.frame(TICKS = as.integer(gt$TICKS), YEAR = as.integer(as.character(gt$YEAR)),
                cHEIGHT = gt$HEIGHT - mean(gt$HEIGHT), BROOD = as.character(gt$BROOD))
f <- "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)"
run_case(list(name = "grouseticks", formula = f, data = d, string_cols = "BROOD",
  numeric_factor_cols = "YEAR", fits = pois_fits(f), exact_poisson_ri = list(y = "TICKS"),
  origin = "lme4::grouseticks: ticks on red grouse chicks, 403 rows, 118 broods; Elston et al. (2001) Parasitology 122:563-569",
  license = lic_lme4,
  note = paste("YEAR written as an integer (95, 96, 97) and treated as categorical (reference 95);",
               "cHEIGHT = HEIGHT - mean(HEIGHT) computed in R and written with 15 significant digits;",
               "BROOD written as strings. Poisson, log link.")))

cat("done\n")
