## make_multilevel.R -- lme4 and glmmTMB references for formulas with several grouping
## factors, nested and crossed (issue 13).
##
## Run from the repository root:
##     Rscript tests/reference/make_multilevel.R
##
## Writes the datasets it fits to tests/reference/data/ (pastes.csv: lme4::Pastes;
## scotssec.csv: mlmRev::ScotsSec; cake.csv: lme4::cake with temp, the temperature as a
## number; grouseticks_full.csv: lme4::grouseticks with cHEIGHT = HEIGHT - mean(HEIGHT);
## penicillin.csv and verbagg.csv are make_crossed.R's) and, per case, to
## tests/reference/multilevel.json: the data file, formula, family and method; the
## criterion (REML criterion, else deviance -2 logLik), logLik, fixef and their SEs
## (vcov), lme4's as.data.frame(VarCorr(m)) rows (grp, var1, var2, vcov, sdcor), the
## number of levels of every grouping factor, and the conditional modes (ranef) per
## grouping factor and column.
## Tight optimiser tolerances, so that the references are at the optimum.
## Requires (Debian): r-base-core r-cran-lme4 r-cran-glmmtmb r-cran-mlmrev r-cran-jsonlite.
## lme4 1.1-31, glmmTMB 1.1.5, R 4.2.2.

options(digits = 15, warn = 1, stringsAsFactors = FALSE)
invisible(Sys.setlocale("LC_COLLATE", "C"))
suppressPackageStartupMessages({ library(lme4); library(glmmTMB); library(jsonlite) })

out_dir <- file.path("tests", "reference")
if (!dir.exists(out_dir)) stop("run from the repository root")
data_dir <- file.path(out_dir, "data")

write_data <- function(df, name) {
  write.csv(df, file.path(data_dir, name), row.names = FALSE)
  read.csv(file.path(data_dir, name))
}

pastes <- write_data(data.frame(strength = Pastes$strength, batch = as.character(Pastes$batch),
                                cask = as.character(Pastes$cask)), "pastes.csv")
data(ScotsSec, package = "mlmRev")
scots <- write_data(data.frame(attain = ScotsSec$attain, verbal = ScotsSec$verbal, sex = as.character(ScotsSec$sex),
                               primary = as.character(ScotsSec$primary), second = as.character(ScotsSec$second)),
                    "scotssec.csv")
cake_df <- write_data(data.frame(angle = cake$angle, recipe = as.character(cake$recipe),
                                 replicate = as.integer(as.character(cake$replicate)),
                                 temp = as.numeric(as.character(cake$temperature))), "cake.csv")
gt <- lme4::grouseticks
grouse <- write_data(data.frame(TICKS = gt$TICKS, YEAR = as.character(gt$YEAR), cHEIGHT = gt$HEIGHT - mean(gt$HEIGHT),
                                INDEX = as.character(gt$INDEX), BROOD = as.character(gt$BROOD),
                                LOCATION = as.character(gt$LOCATION)), "grouseticks_full.csv")
pen <- read.csv(file.path(data_dir, "penicillin.csv"))
verbagg <- read.csv(file.path(data_dir, "verbagg.csv"))
cake_df$replicate <- factor(cake_df$replicate)

lctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 2e-4, rhoend = 2e-12, maxfun = 1e5))
gctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5), tolPwrss = 1e-10)

ranef_list <- function(m) {
  re <- ranef(m)
  lapply(names(re), function(g) list(group = g, levels = rownames(re[[g]]),
                                     columns = lapply(re[[g]], function(x) x), names = names(re[[g]])))
}

summarise <- function(m, data_file, formula, family, reml) {
  vc <- as.data.frame(VarCorr(m))
  vc_rows <- lapply(seq_len(nrow(vc)), function(i) list(group = vc$grp[i], var1 = if (is.na(vc$var1[i])) NULL else vc$var1[i],
                                                         var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i],
                                                         vcov = vc$vcov[i], sdcor = vc$sdcor[i]))
  list(data = data_file, formula = formula, family = family, method = if (reml) "REML" else "ML",
       criterion = if (isREML(m)) unname(REMLcrit(m)) else unname(-2 * as.numeric(logLik(m))),
       logLik = as.numeric(logLik(m)), singular = isSingular(m),
       fixef = as.list(fixef(m)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       varcorr = vc_rows, n_levels = as.list(getME(m, "l_i")), ranef = ranef_list(m))
}

lmm <- function(name, data, data_file, formula, reml) {
  f <- as.formula(formula)
  summarise(lmer(f, data, REML = reml, control = lctrl), data_file, formula, "gaussian", reml)
}
glmm <- function(name, data, data_file, formula, family) {
  f <- as.formula(formula)
  summarise(glmer(f, data, family = family, control = gctrl), data_file, formula, family, FALSE)
}

cases <- list(
  pastes_nested_REML = lmm("", pastes, "pastes.csv", "strength ~ 1 + (1 | batch/cask)", TRUE),
  pastes_nested_ML = lmm("", pastes, "pastes.csv", "strength ~ 1 + (1 | batch/cask)", FALSE),
  pastes_explicit_REML = lmm("", pastes, "pastes.csv", "strength ~ 1 + (1 | batch) + (1 | batch:cask)", TRUE),
  penicillin_REML = lmm("", pen, "penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)", TRUE),
  penicillin_ML = lmm("", pen, "penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)", FALSE),
  scotssec_REML = lmm("", scots, "scotssec.csv", "attain ~ verbal + sex + (1 | primary) + (1 | second)", TRUE),
  scotssec_ML = lmm("", scots, "scotssec.csv", "attain ~ verbal + sex + (1 | primary) + (1 | second)", FALSE),
  scotssec_slope_REML = lmm("", scots, "scotssec.csv", "attain ~ verbal + (verbal | second) + (1 | primary)", TRUE),
  scotssec_uncorr_ML = lmm("", scots, "scotssec.csv", "attain ~ verbal + (verbal || second) + (1 | primary)", FALSE),
  cake_interaction_REML = lmm("", cake_df, "cake.csv", "angle ~ recipe + temp + (1 | recipe:replicate)", TRUE),
  cake_nested_REML = lmm("", cake_df, "cake.csv", "angle ~ recipe + temp + (1 | replicate) + (1 | replicate:recipe)", TRUE),
  cake_slope_ML = lmm("", cake_df, "cake.csv", "angle ~ recipe + temp + (1 | replicate) + (temp | replicate:recipe)", FALSE),
  grouseticks_poisson_ML = glmm("", grouse, "grouseticks_full.csv",
                                "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", "poisson"),
  verbagg_binomial_ML = glmm("", verbagg, "verbagg.csv", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                             "binomial")
)

meta <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
             glmmTMB = as.character(packageVersion("glmmTMB")), cases = cases)
writeLines(toJSON(meta, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           file.path(out_dir, "multilevel.json"))
