# %% [markdown]
# # 3. Time series: AR, MLP, RNN, LSTM and temporal CNN on real records
#
# Many climate predictions start from a single time series: an index such as Niño 1+2, the
# temperature at a station. The model reads a window of the recent past and forecasts the next
# steps. This notebook compares five ways of reading that window, on two real records that
# ship inside installed packages (no download):
#
# - the monthly **Niño 1+2** sea surface temperature, 1950-2010 (ERSST.v3b, NOAA CPC, via
#   statsmodels: `cm.data.real.nino12`);
# - **daily weather at Seattle**, 2012-2015 (NOAA, via vega_datasets:
#   `cm.data.real.seattle_weather`).
#
# Then it looks inside the recurrent networks: why a plain RNN forgets (vanishing gradients)
# and what an LSTM changes, and what a *bidirectional* network may and may not see.

# %%
import os

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

import climml as cm
from climml.tasks.regression import forecast_and_score
from climml.viz import plots, style

FAST = os.environ.get("CLIMML_NOTEBOOK_FAST") == "1"  # the test suite's shrunken run
EPOCHS = 2 if FAST else 60
DAILY_EPOCHS = 2 if FAST else 40
QUIET = ["output.progress=false"]

# %% [markdown]
# ## The monthly El Niño record
#
# `configs/lstm_nino.yaml` sets up the task: from the last 12 months of the Niño 1+2 anomaly
# (and the calendar month, as sine and cosine), forecast the anomaly 1, 3 and 6 months ahead;
# train on 1950-1990, choose the epoch on the 1990s, test on 2001-2010.

# %%
cfg = cm.config.load("../configs/lstm_nino.yaml", overrides=[f"train.epochs={EPOCHS}", *QUIET])
exp = cm.pipeline.prepare(cfg)
series = exp.raw["nino12_anom"]
fig, ax = plt.subplots(figsize=(9, 2.6), layout="constrained")
ax.plot(series["time"], series, lw=0.8)
for split, (start, end) in cfg.data.splits.items():
    ax.axvspan(np.datetime64(start), np.datetime64(end), alpha=0.1, label=split)
ax.set(ylabel="Niño 1+2 anomaly (degC)", title="The record and its splits")
ax.legend(ncol=3, fontsize="small")
plt.show()
print("one sample's input (steps, features):", exp.spec.input_shape)

# %% [markdown]
# ## Five ways to read a window
#
# - **AR(p)**, the autoregressive model, is linear regression on the last p values: the
#   classical baseline, fitted by least squares (`eval.baselines: [ar]`).
# - An **MLP** flattens the window into one vector: it can learn any nonlinear function of it,
#   but knows nothing about order (shuffling the months would not change what it can learn).
# - An **RNN** reads the window one step at a time, updating a hidden state `h_t = tanh(W x_t
#   + U h_{t-1} + b)`: the same weights at every step, and order built in.
# - An **LSTM** adds a cell state with gates that decide what to keep, forget and output;
#   the cell state is updated additively, which (below) is why it remembers longer.
# - A **temporal CNN** slides 1-D filters along time (with dilations to see further back),
#   like the 2-D filters of notebook 1 along one axis.
#
# Every family is built from the registry for the experiment's shapes and trained by the same
# `fit`; the regression task scores each against persistence, climatology and AR.

# %%
families = {
    "mlp": dict(hidden=(16,)),
    "rnn": dict(hidden=(8,)),
    "lstm": dict(hidden=(8,)),
    "temporal_cnn": dict(filters=(8, 8), dilation=(1, 2), padding="causal", pool="last"),
}
trained, skill = {}, {}
for name, hyper in families.items():
    model = cm.models.build(name, exp.spec, rngs=nnx.Rngs(0), **hyper)
    cm.train.fit(
        model,
        exp.loader("train", training=True),
        exp.loader("val"),
        cfg.train,
        seed=0,
        progress=False,
    )
    _, scores = forecast_and_score(exp, cm.pipeline.TrainedModel.from_module(model))
    trained[name], skill[name] = model, scores["model"]
skill |= {baseline: scores[baseline] for baseline in cfg.eval.baselines}
for name, by_metric in skill.items():
    print(
        f"{name:>13}: RMSE "
        + ", ".join(f"{v:.2f}" for v in by_metric["rmse"].values())
        + " degC at leads "
        + ", ".join(by_metric["rmse"])
    )
plots.plot_skill_by_lead(skill, lead_unit=style.time_step_unit(exp.time), units="degC")

# %% [markdown]
# Read the table lead by lead. On 40 years of one index the margins are small: ENSO at these
# leads is close to a damped linear oscillation, which AR captures with a handful of
# coefficients, and a few hundred training samples leave little room for a nonlinear model to
# find more without over-fitting. Where a network beats AR here, check the margin against a
# bootstrap interval (notebook 7) before believing it. Climatology (the mean anomaly for the
# calendar month, close to zero) is the reference that does not decay: persistence beats it at
# short leads and loses to it at long ones.
#
# ## A daily record: Seattle
#
# Daily weather is noisier and has a strong seasonal cycle. `configs/tcnn_daily.yaml`
# forecasts the maximum temperature 1-3 days ahead from two weeks of precipitation,
# temperatures, wind and day of year, with a causal temporal CNN.

# %%
daily_cfg = cm.config.load(
    "../configs/tcnn_daily.yaml", overrides=[f"train.epochs={DAILY_EPOCHS}", *QUIET]
)
daily = cm.pipeline.prepare(daily_cfg)
tcnn = cm.pipeline.build_model(daily)  # the config's model section
cm.train.fit(
    tcnn,
    daily.loader("train", training=True),
    daily.loader("val"),
    daily_cfg.train,
    seed=0,
    progress=False,
)
_, daily_scores = forecast_and_score(daily, cm.pipeline.TrainedModel.from_module(tcnn))
plots.plot_skill_by_lead(daily_scores, lead_unit=style.time_step_unit(daily.time), units="degC")

# %% [markdown]
# Persistence is good one day ahead and degrades fast; the day-of-year climatology does not
# degrade at all; AR, a linear combination of the last two weeks, sits between or beyond both.
# The temporal CNN reads the same inputs and must be trained well (the config's 40 epochs, not
# this notebook's fast mode) to earn its place against AR.
#
# ## Vanishing gradients: why a plain RNN forgets
#
# A network learns from a month 30 steps back only if the gradient of its forecast with respect
# to that month is not negligible. For an RNN this gradient is a product of 30 Jacobians
# `dh_t / dh_{t-1} = diag(1 - h_t^2) U`: when their norms are below one it shrinks
# exponentially with distance (Bengio et al. 1994) and the early months cannot be learned from;
# above one it explodes. The LSTM's cell state is carried by `c_t = f_t * c_{t-1} + ...`: along
# it the gradient is multiplied by the forget gate `f_t` only, a number in (0, 1) that the
# network *learns*, so it can keep a memory as long as it needs (Hochreiter and Schmidhuber
# 1997).
#
# `cm.explain.saliency` gives the gradient of the forecast with respect to every input value.
# We read a 48-month window and plot the gradient's size at each month back, averaged over
# test samples, for untrained networks whose recurrent weights we set by hand:
#
# - the RNN as climml builds it, with an *orthogonal* recurrent matrix (all its singular values
#   are 1, so it preserves the gradient's norm: the reason it is the standard initialization),
#   and the same RNN with that matrix halved (singular values 0.5, the contracting regime that
#   training easily drifts into);
# - the LSTM as built (forget-gate bias 1, so `f ~ 0.73`) and with the forget bias raised to 4
#   (`f ~ 0.98`), as a trained LSTM that needs a long memory learns to do.

# %%
long_cfg = cm.config.load(
    "../configs/lstm_nino.yaml", overrides=["data.input_steps=48", "data.gap=48", *QUIET]
)
long_exp = cm.pipeline.prepare(long_cfg)
x = next(iter(long_exp.loader("test"))).x  # (batch, 48 months, features)
HIDDEN = 16


def gradient_through_time(model):
    """Mean |d forecast(lead 1) / d input| at each step of the window, oldest first."""
    predict = cm.pipeline.TrainedModel.from_module(model).predict_fn()
    grads = cm.explain.saliency(predict, x, output_fn=lambda p: p[0])
    return np.asarray(jnp.linalg.norm(grads, axis=-1).mean(axis=0))


def network(name, *, scale_recurrent=1.0, forget_bias=None, **kwargs):
    model = cm.models.build(name, long_exp.spec, rngs=nnx.Rngs(0), hidden=(HIDDEN,), **kwargs)
    for layer in model.forward:
        layer.w_rec[...] = layer.w_rec[...] * scale_recurrent
        if forget_bias is not None:  # the LSTM's gates are [input, forget, cell, output]
            layer.b_in[...] = layer.b_in[...].at[HIDDEN : 2 * HIDDEN].set(forget_bias)
    return model


steps_back = np.arange(x.shape[1], 0, -1)  # 48 ... 1 months before the forecast
curves = {
    "RNN, orthogonal recurrent matrix": network("rnn"),
    "RNN, recurrent matrix x 0.5": network("rnn", scale_recurrent=0.5),
    "LSTM, forget bias 1 (f ~ 0.73)": network("lstm"),
    "LSTM, forget bias 4 (f ~ 0.98)": network("lstm", forget_bias=4.0),
}
fig, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
for label, model in curves.items():
    ax.semilogy(steps_back, gradient_through_time(model), label=label)
ax.invert_xaxis()
ax.set(
    xlabel="months before the forecast time",
    ylabel="|gradient| (normalized units)",
    title="Gradient of the 1-month forecast through time",
)
ax.legend(fontsize="small")
plt.show()

# %% [markdown]
# With singular values below one the RNN's gradient decays by orders of magnitude within a few
# years of lags: what happened 3-4 years back hardly moves the forecast, and training cannot
# easily change that because the learning signal for those weights is just as small. The
# orthogonal matrix keeps it flat at the start of training, but nothing holds it there as the
# weights change. The LSTM's decay is set by its forget gate, a learned quantity: with `f` near
# 1 the gradient survives the whole window. Gradient clipping (`train.clip_norm`) guards against
# the opposite failure, gradients that *explode*.
#
# ## Bidirectional versus causal
#
# A **bidirectional** network runs a second recurrence from the end of the window to its start
# and merges both. Its gradient is large at *both* ends of the window: the backward pass reads
# the oldest months last.

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.4), layout="constrained")
for label, model in [
    ("forward (causal) LSTM", network("lstm")),
    ("bidirectional LSTM", network("lstm", bidirectional=True)),
]:
    ax.semilogy(steps_back, gradient_through_time(model), label=label)
ax.invert_xaxis()
ax.set(
    xlabel="months before the forecast time",
    ylabel="|gradient| (normalized units)",
    title="Which months an untrained LSTM's forecast depends on",
)
ax.legend(fontsize="small")
plt.show()

# %% [markdown]
# Is that cheating? Not here: every month in the window is before the forecast time, so
# reading it in both directions uses only the past. It would be
# cheating if the window reached past the forecast time, e.g. a model labelling every day of a
# record (gap filling, event detection in reanalysis, segmentation) that is then used to
# forecast: at day t a bidirectional model has read days t+1, t+2, ... A **causal** model (a
# forward-only RNN, or a temporal CNN with `padding: causal`, whose filters only look back)
# is the safe choice whenever its per-step outputs are used as forecasts.
#
# Does reading both ways help this forecast? Train a bidirectional LSTM on the 12-month window
# and compare it with the forward one trained above:

# %%
bilstm = cm.models.build("lstm", exp.spec, rngs=nnx.Rngs(0), hidden=(8,), bidirectional=True)
cm.train.fit(
    bilstm, exp.loader("train", training=True), exp.loader("val"), cfg.train, seed=0, progress=False
)
_, scores = forecast_and_score(exp, cm.pipeline.TrainedModel.from_module(bilstm))
for name, by_metric in [("causal (forward)", skill["lstm"]), ("bidirectional", scores["model"])]:
    rmse = ", ".join(f"{v:.2f}" for v in by_metric["rmse"].values())
    print(f"{name:>17} LSTM: RMSE {rmse} degC at leads 1, 3, 6 months")

# %% [markdown]
# Typically little: the information is in the most recent months, which the forward LSTM
# reads last, and the backward direction doubles the cost. Bidirectionality pays off when
# context on both sides of a step matters and is legitimately available.
#
# **Takeaways.** Start with AR and persistence; a network must beat them on held-out years to
# be worth its complexity. RNNs forget because their gradients vanish through time; LSTMs (and
# dilated temporal CNNs) keep a longer memory. Use bidirectional models only where the future
# of each step is really known at prediction time.
