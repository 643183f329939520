#!/usr/bin/env Rscript
# Reference values for the frequentist modules (synthesis/pooling.py, subgroups.py,
# metaregression.py, pubbias.py), computed with R's metafor.
#
# Usage (from the repository root):
#     Rscript tests/reference/metafor_reference.R
#
# Writes tests/reference/metafor_pool.json, metafor_metareg.json, metafor_bias.json and
# metafor_subgroups.json (and metafor_multilevel.json: see the multilevel section; with
# --multilevel-only, that file alone). Every file records the R, metafor, metadat and jsonlite versions and
# the exact inputs (yi, vi, covariates) it used, so that the Python tests feed the same numbers.
#
# Datasets:
#   bcg        dat.bcg (Colditz 1994), log risk ratios via escalc(measure = "RR"), k = 13;
#              moderators ablat and year; subgroups by allocation (random vs not).
#   hackshaw   dat.hackshaw1998 (passive smoking, log odds ratios as given), k = 37.
#   hackshaw_tied  the same with vi rounded to 2 decimals, so that Begg's test has ties.
#   hine       dat.hine1989 (lidocaine, log RR), k = 6: homogeneous, tau^2 = 0 for most estimators.
#   cannon     dat.cannon2006 (intensive statins, endpoint 1, log RR), k = 4 (k <= 5).
#   bcg_k2     the first two studies of bcg (k = 2 edge case).
#   gera_rcts  tests/reference/gera2020_rcts_as_printed.csv: the three RCTs of Gera et al. 2020
#              as printed (HR and 95% CI).
#   dnmbc      data/dnmbc_lrt.csv (the bundled dataset), when that file exists: rows with
#              include == true, yi = log(hr), sei = (log(ci_upper) - log(ci_lower)) /
#              (2 * qnorm((1 + ci_level) / 2)).
#
# Every model is fitted twice: with metafor's default control settings ("default") and with
# tight ones ("tight": threshold = 1e-12 for Fisher scoring, tol = 1e-12 for uniroot) so that
# the convergence tolerance of metafor itself can be told apart from a real discrepancy.

suppressPackageStartupMessages({
  library(metafor)
  library(jsonlite)
})

script_path <- function() {
  arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(arg)) return(normalizePath(sub("^--file=", "", arg[1])))
  normalizePath("tests/reference/metafor_reference.R")
}
ref_dir <- dirname(script_path())
root <- normalizePath(file.path(ref_dir, "..", ".."))

meta <- list(
  R = R.version.string,
  metafor = as.character(packageVersion("metafor")),
  metadat = as.character(packageVersion("metadat")),
  jsonlite = as.character(packageVersion("jsonlite")),
  script = "tests/reference/metafor_reference.R",
  level = 0.95
)

TIGHT <- list(threshold = 1e-12, tol = 1e-12, maxiter = 10000)
METHODS <- c("FE", "DL", "REML", "ML", "PM", "HE", "SJ")
num <- function(x) if (is.null(x)) NA_real_ else as.numeric(x)
arr <- function(x) I(as.numeric(x))

# ------------------------------------------------------------------------------------------
# multilevel models (issue #13): rma.mv(yi, V, random = ~ 1 | cluster/row), written to
# metafor_multilevel.json. `Rscript tests/reference/metafor_reference.R --multilevel-only`
# writes that file alone (and leaves the other four untouched).
#
#   konstantopoulos  metadat::dat.konstantopoulos2011 (56 schools in 11 districts), cluster =
#                    district, moderator year (centred at its mean).
#   bornmann         metadat::dat.bornmann2007 (66 estimates from 21 studies, log odds ratios via
#                    escalc(measure = "OR")), cluster = study, moderator type == "Grant".
#   all_inputs       data/dnmbc_lrt_all_inputs.csv (30 rows, 19 cohorts), yi = log(hr),
#                    sei = (log(ci_upper) - log(ci_lower)) / (2 qnorm((1 + ci_level) / 2)),
#                    cluster = cohort, moderator nonrandomised (design != "rct").
# V: diag(vi) (rho = 0) or vcalc(vi, cluster, obs = row, rho = 0.5) (rho = 0.5); REML and ML;
# test "z" and "t" (df = k - p); fitted with tight control (nlminb rel.tol = 1e-10; metafor's
# defaults where that fails to converge, recorded in "control") and with the defaults.
# ------------------------------------------------------------------------------------------
multilevel_data <- function() {
  out <- list()
  k11 <- dat.konstantopoulos2011
  out$konstantopoulos <- list(
    source = "metadat::dat.konstantopoulos2011", yi = k11$yi, vi = k11$vi,
    cluster = as.character(k11$district), moderator = k11$year - mean(k11$year), moderator_name = "year (centred)")
  b07 <- escalc(measure = "OR", ai = waward, n1i = wtotal, ci = maward, n2i = mtotal, data = dat.bornmann2007)
  out$bornmann <- list(
    source = "metadat::dat.bornmann2007, escalc(measure='OR', ai=waward, n1i=wtotal, ci=maward, n2i=mtotal)",
    yi = as.numeric(b07$yi), vi = as.numeric(b07$vi), cluster = as.character(b07$study),
    moderator = as.numeric(b07$type == "Grant"), moderator_name = "type == Grant")
  path <- file.path(root, "data", "dnmbc_lrt_all_inputs.csv")
  if (file.exists(path)) {
    a <- read.csv(path, stringsAsFactors = FALSE)
    level <- ifelse(is.na(a$ci_level), 0.95, a$ci_level)
    out$all_inputs <- list(
      source = "data/dnmbc_lrt_all_inputs.csv (every row with an HR and CI; cluster = cohort)",
      study = a$study, yi = log(a$hr),
      vi = ((log(a$ci_upper) - log(a$ci_lower)) / (2 * qnorm((1 + level) / 2)))^2,
      cluster = a$cohort, moderator = as.numeric(a$design != "rct"), moderator_name = "nonrandomised",
      default_set = a$default_set)
  }
  out
}

multilevel_fit <- function(d, method, rho, moderator, test, ctl) {
  row <- seq_along(d$yi)
  V <- if (rho > 0) vcalc(d$vi, cluster = d$cluster, obs = row, rho = rho) else diag(d$vi)
  cl <- d$cluster
  mods <- if (moderator) ~ d$moderator else ~ 1
  run <- function(control) rma.mv(d$yi, V, mods = mods, random = ~ 1 | cl / row, method = method,
                                  test = test, control = control, sparse = FALSE)
  # "tight": nlminb's rel.tol 1e-10 (1e-12 stops with convergence code 1 on most of these
  # fits); where even 1e-10 fails, metafor's defaults, recorded as control = "default"
  fit <- if (ctl == "tight") tryCatch(run(list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000)),
                                      error = function(e) NULL) else run(list())
  if (is.null(fit)) { fit <- run(list()); ctl <- "default" }
  names_out <- if (moderator) c("intercept", "moderator") else c("intercept")
  coefs <- list()
  for (j in seq_along(names_out)) {
    coefs[[names_out[j]]] <- list(
      estimate = c(fit$beta)[j], se = fit$se[j], ci_lower = fit$ci.lb[j], ci_upper = fit$ci.ub[j],
      statistic = fit$zval[j], pvalue = fit$pval[j])
  }
  list(method = method, rho = rho, moderator = moderator, test = test, control = ctl, k = fit$k,
       p = fit$p, sigma2_between = fit$sigma2[1], sigma2_within = fit$sigma2[2],
       qe = fit$QE, qe_pvalue = fit$QEp, qe_df = fit$k - fit$p, df = num(fit$ddf[1]),
       loglik = as.numeric(logLik(fit)), qm = fit$QM, qm_pvalue = fit$QMp,
       pi_lower = if (moderator) NA_real_ else predict(fit)$pi.lb,
       pi_upper = if (moderator) NA_real_ else predict(fit)$pi.ub, coefficients = coefs)
}

ml_data <- multilevel_data()
ml_fits <- list()
for (name in names(ml_data)) {
  for (method in c("REML", "ML")) for (rho in c(0, 0.5)) for (moderator in c(FALSE, TRUE))
    for (test in c("z", "t")) for (ctl in c("tight", "default")) {
      r <- multilevel_fit(ml_data[[name]], method, rho, moderator, test, ctl)
      r$data <- name
      ml_fits[[length(ml_fits) + 1]] <- r
    }
}
ml_meta <- meta
ml_meta$model <- "rma.mv(yi, V, mods, random = ~ 1 | cluster/row, method, test, sparse = FALSE)"
write_json(list(meta = ml_meta, datasets = lapply(ml_data, function(d) lapply(d, function(x) if (is.numeric(x)) I(x) else x)),
                fits = ml_fits),
           file.path(ref_dir, "metafor_multilevel.json"),
           auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE)
cat("wrote metafor_multilevel.json (", length(ml_fits), "fits )\n")
if ("--multilevel-only" %in% commandArgs(trailingOnly = TRUE)) quit(save = "no")

# ------------------------------------------------------------------------------------------
# datasets
# ------------------------------------------------------------------------------------------
datasets <- list()
add_dataset <- function(name, source, study, yi, vi, extra = list()) {
  d <- list(source = source, study = as.character(study), yi = as.numeric(yi), vi = as.numeric(vi))
  for (n in names(extra)) d[[n]] <- extra[[n]]
  datasets[[name]] <<- d
}
# JSON form of a list of datasets: vectors stay arrays even when of length 1
for_json <- function(ds) lapply(ds, function(d) lapply(d, function(x) if (length(x) > 1 || is.numeric(x)) I(x) else x))

bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
add_dataset("bcg", "metadat::dat.bcg, escalc(measure='RR')",
            paste(bcg$author, bcg$year), bcg$yi, bcg$vi,
            list(ablat = bcg$ablat, year = bcg$year,
                 allocation = ifelse(bcg$alloc == "random", "random", "nonrandom")))

hk <- dat.hackshaw1998
add_dataset("hackshaw", "metadat::dat.hackshaw1998 (yi, vi as given: log OR)",
            paste(hk$author, hk$year), hk$yi, hk$vi)

# the same with variances rounded to 2 decimals: tied variances (Begg's test normal approximation)
add_dataset("hackshaw_tied", "metadat::dat.hackshaw1998 with vi rounded to 2 decimals (ties)",
            paste(hk$author, hk$year), hk$yi, round(hk$vi, 2))

hine <- escalc(measure = "RR", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = dat.hine1989)
add_dataset("hine", "metadat::dat.hine1989, escalc(measure='RR')", hine$source, hine$yi, hine$vi)

can <- escalc(measure = "RR", ai = ep1t, n1i = nt, ci = ep1c, n2i = nc, data = dat.cannon2006)
add_dataset("cannon", "metadat::dat.cannon2006, endpoint 1, escalc(measure='RR')",
            can$trial, can$yi, can$vi)

add_dataset("bcg_k2", "first two studies of metadat::dat.bcg, escalc(measure='RR')",
            paste(bcg$author, bcg$year)[1:2], bcg$yi[1:2], bcg$vi[1:2])

read_hr_csv <- function(path) {
  d <- read.csv(path, stringsAsFactors = FALSE, check.names = FALSE, strip.white = TRUE)
  if ("include" %in% names(d)) {
    keep <- tolower(trimws(as.character(d$include))) %in% c("true", "1", "yes", "y", "t")
    d <- d[keep, , drop = FALSE]
  }
  if ("log_hr" %in% names(d)) {
    d$yi <- d$log_hr
    d$vi <- d$se^2
  } else {
    level <- if ("ci_level" %in% names(d)) d$ci_level else rep(0.95, nrow(d))
    level[is.na(level)] <- 0.95
    d$yi <- log(d$hr)
    sei <- (log(d$ci_upper) - log(d$ci_lower)) / (2 * qnorm((1 + level) / 2))
    d$vi <- sei^2
  }
  d
}

gera <- read_hr_csv(file.path(ref_dir, "gera2020_rcts_as_printed.csv"))
add_dataset("gera_rcts", "tests/reference/gera2020_rcts_as_printed.csv", gera$study, gera$yi, gera$vi)

dnmbc_path <- file.path(root, "data", "dnmbc_lrt.csv")
has_dnmbc <- file.exists(dnmbc_path)
if (has_dnmbc) {
  dn <- read_hr_csv(dnmbc_path)
  extra <- list()
  if ("design" %in% names(dn)) {
    extra$design <- tolower(trimws(dn$design))
    extra$design_group <- ifelse(extra$design == "rct", "rct", "nonrandomised")
  }
  if ("bone_only_fraction" %in% names(dn)) extra$bone_only_fraction <- as.numeric(dn$bone_only_fraction)
  add_dataset("dnmbc", "data/dnmbc_lrt.csv (include == true)", dn$study, dn$yi, dn$vi, extra)
}
meta$dnmbc_included <- has_dnmbc

# ------------------------------------------------------------------------------------------
# pooling: every estimator, z and Knapp-Hartung, default and tight control
# ------------------------------------------------------------------------------------------
pool_fit <- function(d, method, test, control) {
  fit <- suppressWarnings(rma(d$yi, d$vi, method = method, test = test, control = control))
  pr <- predict(fit)
  if (method == "FE") {
    tci <- c(NA, NA, NA)
    pi <- c(NA, NA)
  } else {
    ci_control <- if (length(control)) list(tol = control$tol) else list()
    tci <- confint(fit, control = ci_control)$random["tau^2", ]
    pi <- c(pr$pi.lb, pr$pi.ub)
  }
  list(
    method = method, test = test, k = fit$k,
    estimate = c(fit$beta), se = fit$se, ci_lower = fit$ci.lb, ci_upper = fit$ci.ub,
    statistic = fit$zval, pvalue = fit$pval, df = num(fit$ddf),
    tau2 = fit$tau2, se_tau2 = num(fit$se.tau2), i2 = fit$I2, h2 = fit$H2,
    q = fit$QE, q_pvalue = fit$QEp,
    pi_lower = num(pi[1]), pi_upper = num(pi[2]),
    tau2_ci_lower = num(tci[2]), tau2_ci_upper = num(tci[3])
  )
}

pool <- list()
for (name in names(datasets)) {
  d <- datasets[[name]]
  fits <- list()
  for (method in METHODS) for (test in c("z", "knha")) for (ctl in c("default", "tight")) {
    control <- if (ctl == "tight") TIGHT else list()
    r <- pool_fit(d, method, test, control)
    r$control <- ctl
    fits[[length(fits) + 1]] <- r
  }
  pool[[name]] <- fits
}
write_json(list(meta = meta, datasets = for_json(datasets), fits = pool),
           file.path(ref_dir, "metafor_pool.json"),
           auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE)

# ------------------------------------------------------------------------------------------
# meta-regression
# ------------------------------------------------------------------------------------------
metareg_fit <- function(d, covariates, method, test, control) {
  X <- do.call(cbind, lapply(covariates, function(c) as.numeric(d[[c]])))
  colnames(X) <- covariates
  fit <- suppressWarnings(rma(d$yi, d$vi, mods = X, method = method, test = test, control = control))
  names_out <- c("intercept", covariates)
  coefs <- list()
  for (j in seq_along(names_out)) {
    coefs[[names_out[j]]] <- list(
      estimate = c(fit$beta)[j], se = fit$se[j], ci_lower = fit$ci.lb[j], ci_upper = fit$ci.ub[j],
      statistic = fit$zval[j], pvalue = fit$pval[j]
    )
  }
  list(
    covariates = I(covariates), method = method, test = test, k = fit$k,
    dropped = length(d$yi) - fit$k,
    tau2 = fit$tau2, se_tau2 = num(fit$se.tau2), qm = fit$QM, qm_pvalue = fit$QMp,
    qm_df = I(as.numeric(fit$QMdf)), qe = fit$QE, qe_pvalue = fit$QEp, i2 = fit$I2,
    h2 = fit$H2, r2 = num(fit$R2), coefficients = coefs
  )
}

metareg_cases <- list(
  list(data = "bcg", covariates = c("ablat")),
  list(data = "bcg", covariates = c("ablat", "year"))
)
if (has_dnmbc && !is.null(datasets$dnmbc$bone_only_fraction) &&
    sum(!is.na(datasets$dnmbc$bone_only_fraction)) >= 3) {
  metareg_cases[[length(metareg_cases) + 1]] <- list(data = "dnmbc", covariates = c("bone_only_fraction"))
}
mr <- list()
for (case in metareg_cases) {
  for (method in METHODS) for (test in c("z", "knha")) for (ctl in c("default", "tight")) {
    control <- if (ctl == "tight") TIGHT else list()
    r <- metareg_fit(datasets[[case$data]], case$covariates, method, test, control)
    r$data <- case$data
    r$control <- ctl
    mr[[length(mr) + 1]] <- r
  }
}
write_json(list(meta = meta, datasets = for_json(datasets[unique(sapply(metareg_cases, `[[`, "data"))]), fits = mr),
           file.path(ref_dir, "metafor_metareg.json"),
           auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE)

# ------------------------------------------------------------------------------------------
# publication bias: regtest (Egger), ranktest (Begg), trimfill, fsn, leave1out
# ------------------------------------------------------------------------------------------
# Bias and subgroup fits use the tight control (it changes nothing for the closed-form DL).
bias_fit <- function(d, method) {
  fit <- rma(d$yi, d$vi, method = method, control = TIGHT)
  k <- length(d$yi)
  # regtest and trimfill need k >= 3 for a random-effects fit (metafor stops otherwise)
  na_eg <- list(zval = NA, pval = NA, est = NA, ci.lb = NA, ci.ub = NA)
  na_tf <- list(k0 = NA, side = NA, se.k0 = NA, beta = NA, se = NA, ci.lb = NA, ci.ub = NA,
                tau2 = NA, yi = numeric(0), vi = numeric(0), fill = logical(0))
  eg <- if (k >= 3) regtest(fit, model = "rma", predictor = "sei") else na_eg
  rk <- suppressWarnings(ranktest(fit))
  tf <- if (k >= 3) suppressWarnings(trimfill(fit, control = TIGHT)) else na_tf
  fs <- fsn(d$yi, d$vi, type = "Rosenthal")
  l1 <- leave1out(fit)
  filled <- if (isTRUE(tf$k0 > 0)) tf$fill else rep(FALSE, length(tf$yi))
  list(
    method = method, k = fit$k, control = "tight",
    egger = list(z = eg$zval, p = eg$pval, limit_estimate = num(eg$est),
                 limit_ci_lower = num(eg$ci.lb), limit_ci_upper = num(eg$ci.ub)),
    begg = list(tau = unname(rk$tau), p = rk$pval),
    trimfill = list(k0 = num(tf$k0), side = if (is.na(tf$side)) NA else tf$side, se_k0 = tf$se.k0, estimate = c(tf$beta),
                    se = tf$se, ci_lower = tf$ci.lb, ci_upper = tf$ci.ub, tau2 = tf$tau2,
                    filled_yi = arr(tf$yi[filled]), filled_vi = arr(tf$vi[filled])),
    failsafe_n = list(rosenthal = fs$fsnum, p = fs$pval),
    leave_one_out = list(estimate = arr(l1$estimate), se = arr(l1$se),
                         ci_lower = arr(l1$ci.lb), ci_upper = arr(l1$ci.ub),
                         tau2 = arr(l1$tau2), q = arr(l1$Q), i2 = arr(l1$I2))
  )
}

bias <- list()
for (name in names(datasets)) {
  d <- datasets[[name]]
  fits <- list(bias_fit(d, "DL"))
  if (name %in% c("bcg", "hackshaw")) fits[[2]] <- bias_fit(d, "REML")
  bias[[name]] <- fits
}
write_json(list(meta = meta, datasets = for_json(datasets[names(bias)]), fits = bias),
           file.path(ref_dir, "metafor_bias.json"),
           auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE)

# ------------------------------------------------------------------------------------------
# subgroups: separate random-effects fits per subgroup (own tau^2), then the test for subgroup
# differences as a fixed-effect meta-regression of the subgroup estimates on the subgroup
# (metafor's documented approach; the same Q_between as meta's default tau.common = FALSE).
# ------------------------------------------------------------------------------------------
subgroup_fit <- function(d, groupvar, method, test) {
  g <- as.character(d[[groupvar]])
  lev <- unique(g)
  groups <- list()
  est <- se <- c()
  for (l in lev) {
    i <- g == l
    fit <- suppressWarnings(rma(d$yi[i], d$vi[i], method = method, test = test, control = TIGHT))
    groups[[l]] <- list(k = fit$k, estimate = c(fit$beta), se = fit$se, ci_lower = fit$ci.lb,
                        ci_upper = fit$ci.ub, tau2 = fit$tau2, i2 = fit$I2, q = fit$QE)
    est <- c(est, c(fit$beta))
    se <- c(se, fit$se)
  }
  comp <- rma(est, sei = se, mods = ~ factor(lev), method = "FE")
  list(groupvar = groupvar, method = method, test = test, control = "tight", groups = groups,
       q_between = comp$QM, df = comp$QMdf[1], p = comp$QMp)
}

subgroup_cases <- list(list(data = "bcg", groupvar = "allocation"))
if (has_dnmbc && !is.null(datasets$dnmbc$design_group)) {
  tab <- table(datasets$dnmbc$design_group)
  if (length(tab) == 2 && all(tab >= 2))
    subgroup_cases[[length(subgroup_cases) + 1]] <- list(data = "dnmbc", groupvar = "design_group")
}
sg <- list()
for (case in subgroup_cases) for (method in c("DL", "REML")) for (test in c("z", "knha")) {
  r <- subgroup_fit(datasets[[case$data]], case$groupvar, method, test)
  r$data <- case$data
  sg[[length(sg) + 1]] <- r
}
write_json(list(meta = meta, datasets = for_json(datasets[unique(sapply(subgroup_cases, `[[`, "data"))]), fits = sg),
           file.path(ref_dir, "metafor_subgroups.json"),
           auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE)

cat("wrote metafor_pool.json, metafor_metareg.json, metafor_bias.json, metafor_subgroups.json",
    if (has_dnmbc) "(with dnmbc)" else "(data/dnmbc_lrt.csv not found: dnmbc skipped)", "\n")
