# %% [markdown]
# # 7. Verification: how good is a forecast?
#
# A forecast is only useful if we can say how good it is, and "good" has several meanings.
# Murphy (1993) separates them: **accuracy** (are forecast and outcome close?),
# **discrimination** (do the forecasts differ when the outcomes differ?), **reliability** (when
# we say 30 %, does it happen 30 % of the time?) and **sharpness** (do we dare say 0 % or
# 100 %?). Each score below sees some of these and is blind to others; the point of this
# notebook is to learn which.
#
# To see what a score detects we need forecasts whose qualities we *know*. So we build a toy
# forecasting problem where we control everything:
#
# - an unobserved "predictable signal" `s` (think: the part of tomorrow's rainfall that the
#   large-scale flow determines), standard normal;
# - the observation `y = s + noise`, with noise of standard deviation 0.8 that no forecaster can
#   know;
# - the event of interest: `y >= 1` (a "heavy" day, about 22 % of days).
#
# A forecaster who knows `s` and the noise level exactly issues the *perfect probabilistic
# forecast* `P(y >= 1 | s)`. A second forecaster knows `s` too but believes the noise is half
# as large: same information, same ranking of days, **overconfident** probabilities. Every
# score we compute is a `climml.metrics` kernel (pure `jax.numpy`, jit/vmap-friendly).

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from scipy.signal import lfilter
from scipy.stats import norm

import climml as cm
from climml.viz import plots

FAST = os.environ.get("CLIMML_NOTEBOOK_FAST") == "1"  # the test suite's shrunken run
N_DAYS = 4_000 if FAST else 40_000
N_MEMBERS = 10 if FAST else 20
N_BOOT = 200 if FAST else 1000

rng = np.random.default_rng(0)
signal = rng.standard_normal(N_DAYS)
NOISE, EVENT = 0.8, 1.0
observed = signal + NOISE * rng.standard_normal(N_DAYS)
event = (observed >= EVENT).astype(np.float32)  # 1 on heavy days

# Probability that y >= 1 given s, for a forecaster who believes the noise is `sd`.
p_calibrated = norm.sf(EVENT, loc=signal, scale=NOISE).astype(np.float32)
p_overconfident = norm.sf(EVENT, loc=signal, scale=NOISE / 2).astype(np.float32)
print(f"{N_DAYS} days, event frequency (base rate) {event.mean():.3f}")

# %% [markdown]
# ## 1. Yes/no forecasts: the confusion matrix
#
# Many decisions are binary (issue a warning or not), so we turn the probability into a yes/no
# forecast by a **decision threshold**, here 0.5. Every day then falls in one cell of the
# 2x2 **contingency table** (the confusion matrix of a two-class problem):
#
# | | observed yes | observed no |
# |---|---|---|
# | **forecast yes** | hits *a* | false alarms *b* |
# | **forecast no** | misses *c* | correct negatives *d* |
#
# `cm.metrics.contingency` counts the cells (the event is `value >= threshold`, applied to the
# forecast probability and to the 0/1 observation alike); the table is a NamedTuple of
# *sufficient statistics*, so tables from different batches or devices just add (`t1 + t2`)
# and every score is formed at the end from the merged counts.

# %%
table = cm.metrics.contingency(p_calibrated, event, threshold=0.5)
print({name: int(v) for name, v in table._asdict().items()})
# The same counts as a 2-class confusion matrix (rows: true class, columns: predicted).
matrix = cm.metrics.confusion_matrix(
    (p_calibrated >= 0.5).astype(np.int32), event.astype(np.int32), num_classes=2
)
plots.plot_confusion_matrix(matrix, class_names=["no event", "event"], normalize=False)

# %% [markdown]
# ## 2. Precision, recall, F1 and the base-rate trap
#
# - **precision** = a / (a + b): of the warnings we issued, the fraction that verified
#   (1 - false alarm ratio);
# - **recall** = a / (a + c): of the events that happened, the fraction we warned for (the
#   probability of detection, POD, or hit rate);
# - **F1**: their harmonic mean, high only when both are.
#
# **Accuracy** ((a + d) / n) looks attractive but is dominated by the correct negatives of a
# rare event. A forecaster that *never* warns is right on every non-event day:

# %%
never = np.zeros_like(event)
for name, forecast in [("calibrated p>=0.5", p_calibrated), ("never warn", never)]:
    scores = {
        score: float(getattr(cm.metrics, score)(forecast, event, threshold=0.5))
        for score in ("accuracy", "precision", "recall", "f1_score")
    }
    print(f"{name:>18}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))

# %% [markdown]
# "Never warn" scores an accuracy near 1 minus the base rate and a recall of zero; its
# precision is undefined (NaN: no warnings were issued, 0/0) rather than an exception, which is
# climml's convention for a score without valid points.
#
# The decision threshold is a choice, not a property of the forecast: lowering it trades
# precision for recall. Passing a 1-D array of thresholds evaluates them all at once (one
# `vmap`, a leading axis in the result):

# %%
thresholds = jnp.linspace(0.05, 0.95, 19)
tables = cm.metrics.contingency(p_calibrated, event, threshold=thresholds)
fig, ax = plt.subplots(figsize=(5.5, 3.5), layout="constrained")
ax.plot(thresholds, tables.precision(), "o-", label="precision")
ax.plot(thresholds, tables.recall(), "s-", label="recall (POD)")
ax.plot(thresholds, tables.f1_score(), "^-", label="F1")
ax.set(
    xlabel="decision threshold on the forecast probability",
    ylabel="score",
    title="Precision-recall trade-off (calibrated forecaster)",
)
ax.legend()
plt.show()

# %% [markdown]
# ## 3. ROC curve and AUC: discrimination
#
# The **ROC curve** traces, for every decision threshold, the hit rate (POD) against the false
# alarm *rate* (POFD = b / (b + d), the fraction of non-events we warned for). A forecast with
# no information lies on the diagonal; the area under the curve (**AUC**) is the probability
# that a randomly chosen event day got a higher forecast than a randomly chosen non-event day.
#
# `cm.metrics.roc_auc` computes that probability exactly (a Mann-Whitney statistic over all
# pairs, ties counting one half); `roc_curve` gives the points.

# %%
forecasts = {"calibrated": p_calibrated, "overconfident": p_overconfident}
for name, p in forecasts.items():
    fpr, tpr, thresholds = cm.metrics.roc_curve(p, event)
    print(f"{name}: AUC {float(cm.metrics.roc_auc(p, event)):.4f}, {fpr.size} ROC points")
plots.plot_roc(forecasts, event, event="y >= 1")

# %% [markdown]
# The two curves are **identical**. The overconfident forecaster ranks the days in exactly the
# same order (its probability is a monotonic function of `s`, as the calibrated one's is), and
# ROC/AUC only look at the order. AUC measures discrimination and is blind to calibration: a
# forecast that says 99 % every time it means 60 % has the same AUC.
#
# ## 4. Reliability diagram: calibration
#
# To see calibration, group the days by the probability forecast (bins of width 0.1) and plot
# the observed frequency of the event in each bin against the mean forecast probability. A
# reliable forecast lies on the diagonal. The histogram below it shows how often each probability
# is issued (**sharpness**: a forecast that always says the base rate is perfectly reliable and
# useless). The **Brier score**, the mean squared error of the
# probability against the 0/1 outcome, rewards both reliability and discrimination.

# %%
mean_forecast, frequency, count = plots.reliability(p_overconfident, event, bins=10)
print("overconfident, per bin: forecast", np.round(mean_forecast, 2))
print("                   observed freq", np.round(frequency, 2))
plots.plot_reliability(forecasts, event, event="y >= 1")

# %% [markdown]
# The overconfident forecaster's curve is flatter than the diagonal: when it says 90 % the
# event happens much less often, when it says 5 % more often. Its Brier score is worse even
# though its AUC is the same. Reliability can be repaired after the fact (recalibration)
# without changing discrimination; discrimination cannot be added by post-processing.
#
# ## 5. CSI at several thresholds: deterministic forecasts of rare events
#
# For a deterministic forecast of the *amount* (here the best guess `s` itself), the field
# verifies events at several thresholds: "more than 0.5", "more than 1", ... The **critical
# success index** CSI = a / (a + b + c) ignores the correct negatives, so it is not inflated by
# the many quiet days; the **frequency bias** (a + b) / (a + c) says whether the event is
# forecast as often as it happens (1 is unbiased); the **equitable threat score** removes the
# hits expected by chance.

# %%
levels = jnp.array([0.0, 0.5, 1.0, 1.5, 2.0])
for score in ("csi", "frequency_bias", "ets"):
    values = getattr(cm.metrics, score)(signal, observed, threshold=levels)
    pairs = zip(levels, values, strict=True)
    print(f"{score:>15}: " + "  ".join(f">={t:.1f}: {v:.3f}" for t, v in pairs))

# %% [markdown]
# CSI falls as the event gets rarer, even for the best possible deterministic forecast: rare
# events are intrinsically harder, so compare CSI only at the same threshold and base rate.
# The frequency bias falls below 1 at high thresholds: the best guess `s` is smoother than the
# observation (it leaves out the noise), so it rarely reaches extreme values. A forecast tuned to
# maximize CSI learns to over-forecast instead: scores can be gamed, which is why several are
# reported together.
#
# ## 6. CRPS: scoring an ensemble
#
# An ensemble forecast gives a whole distribution. The **continuous ranked probability score**
# compares the ensemble's cumulative distribution with the step function of the observation;
# it is in the units of the variable, and for a one-member "ensemble" it reduces to the
# absolute error. Lower is better. We build two ensembles around `s`: one whose spread matches
# the true noise, one with half of it (underdispersive, the ensemble analogue of
# overconfidence).

# %%
members = rng.standard_normal((N_DAYS, N_MEMBERS)).astype(np.float32)
good = signal[:, None] + NOISE * members
narrow = signal[:, None] + NOISE / 2 * members
crps_good = cm.metrics.crps_ensemble(good, observed, ensemble_axis=-1)
crps_narrow = cm.metrics.crps_ensemble(narrow, observed, ensemble_axis=-1)
crps_fair = cm.metrics.crps_ensemble(good, observed, ensemble_axis=-1, fair=True)
crps_exact = cm.metrics.crps_gaussian(signal, np.full_like(signal, NOISE), observed)
print(f"CRPS, ensemble with the right spread: {float(crps_good.mean()):.4f}")
print(f"CRPS, underdispersive ensemble:       {float(crps_narrow.mean()):.4f}")
print(f"fair CRPS (as for infinitely many members): {float(crps_fair.mean()):.4f}")
print(f"CRPS of the exact Gaussian forecast:        {float(crps_exact.mean()):.4f}")
print(f"MAE of the ensemble mean (1-member CRPS):   {float(cm.metrics.mae(signal, observed)):.4f}")

# %% [markdown]
# The underdispersive ensemble scores worse although its members are centred on the same
# signal. A finite ensemble is penalized for its sampling noise; the **fair** CRPS corrects
# for the number of members and estimates what the ensemble's distribution would score, here
# close to the exact Gaussian CRPS.
#
# CRPS says *that* the narrow ensemble is worse, not *why*. The **rank histogram** does: rank the
# observation among the members on each day and count the ranks. If the observation is
# statistically indistinguishable from a member, every rank is equally likely (flat). An
# underdispersive ensemble too often has the observation outside all its members: a U shape.

# %%
plots.plot_rank_histogram(narrow, observed, name="underdispersive ensemble")

# %%
plots.plot_rank_histogram(good, observed, name="ensemble with the right spread")

# %% [markdown]
# ## 7. Bootstrap intervals: is the difference real?
#
# Every score above comes from a finite sample. The **bootstrap** resamples the days with
# replacement many times, recomputes the score on each resample, and reports percentiles of
# the results. `cm.metrics.bootstrap` takes any metric function and vmaps it over resamples;
# forecast and observation are resampled together. To compare two forecasts, bootstrap the
# *difference* of their scores on the same resamples: an interval excluding 0 means the
# ranking is robust to sampling.

# %%
key = jax.random.key(0)
auc_ci = cm.metrics.bootstrap(cm.metrics.roc_auc, p_calibrated, event, n=N_BOOT, key=key)
crps_diff = cm.metrics.bootstrap(
    lambda a, b: jnp.mean(a - b), crps_narrow, crps_good, n=N_BOOT, key=key
)
print("AUC, 2.5/50/97.5 percentiles:", np.round(np.asarray(auc_ci), 4))
print("CRPS(narrow) - CRPS(good):   ", np.round(np.asarray(crps_diff), 4))

# %% [markdown]
# Real forecasts are verified on time series, and consecutive days are not independent: a wet
# spell is one event, not ten. Resampling single days then pretends we have more independent
# information than we do and gives intervals that are too narrow. The **moving-block
# bootstrap** (`block=`) resamples runs of consecutive days and keeps that dependence. We make
# the errors autocorrelated (an AR(1) process with a 10-day memory) and compare:

# %%
phi = np.exp(-1 / 10)
shocks = rng.standard_normal(N_DAYS) * np.sqrt(1 - phi**2)
error = lfilter([1.0], [1.0, -phi], shocks).astype(np.float32)  # e[t] = phi e[t-1] + shock[t]
mean_error = lambda e: jnp.mean(e)  # noqa: E731  (the bias of a forecast with these errors)
for block in (1, 10, 50, 200):
    lo, mid, hi = np.asarray(
        cm.metrics.bootstrap(mean_error, error, n=N_BOOT, key=key, block=block)
    )
    print(f"block {block:>3}: 95% interval of the bias [{lo:+.3f}, {hi:+.3f}], width {hi - lo:.3f}")
# For an AR(1) series the variance of the mean is inflated by (1 + phi) / (1 - phi) (~19 here):
honest = 2 * 1.96 * np.sqrt((1 + phi) / (1 - phi) / N_DAYS)
print(f"width from the AR(1) formula: {honest:.3f}")

# %% [markdown]
# The interval widens with the block length and approaches the width the AR(1) formula gives
# once the blocks are several times longer than the memory of the errors (an e-folding time of
# 10 days here). With block 1 we would claim a precision the data do not have. Very long blocks
# leave few independent blocks to draw, so the interval becomes noisy: a block of a few
# decorrelation times is the usual compromise.
#
# **Takeaways.** Report several scores: accuracy hides rare events, AUC hides calibration, CSI
# depends on the base rate, CRPS rewards the right spread. Put an interval on every score, with
# blocks when the samples are serially correlated. The same kernels work on gridded forecasts:
# `climml.metrics.xr` wraps them for xarray with latitude area weighting, and
# `eval.metrics` in a config names them for a whole run.
