# %% [markdown]
# # 2. Forecasting El Niño with a CNN from ocean maps
#
# Ham, Kim and Luo (2019, *Nature*) showed that a small convolutional network reading maps of
# sea surface temperature (SST) and upper-ocean heat content can forecast the Niño3.4 index
# (the SST averaged over 5S-5N, 170W-120W) more than a year ahead. This notebook trains the
# same kind of model with climml and asks the questions every forecaster should ask of it:
#
# 1. What does the network see? (maps of the inputs)
# 2. Is it learning, under-fitting or over-fitting? (loss curves, early stopping)
# 3. Does it beat the forecasts we get for free? (skill by lead against persistence and
#    climatology)
#
# The ocean here is climml's synthetic ENSO (`cm.data.synthetic.enso`): a recharge oscillator
# (Jin 1997) on a tropical Pacific grid in which heat content *leads* SST by a few months, the
# physical reason ENSO is predictable. It is generated from a seed, so no download is needed.

# %%
import os

from flax import nnx

import climml as cm
from climml.tasks.regression import forecast_and_score
from climml.viz import maps, plots, style

FAST = os.environ.get("CLIMML_NOTEBOOK_FAST") == "1"  # the test suite's shrunken run
if FAST:  # 40 years on a 12 x 24 grid, a few epochs: seconds, not minutes
    DATA = [
        "data.source_args={n_months: 480, seed: 0, nlat: 12, nlon: 24}",
        "data.splits={train: [1870-01, 1894-12], val: [1895-01, 1901-12],"
        " test: [1902-01, 1909-12]}",
    ]
    EPOCHS, LONG_EPOCHS, LARGE = 3, 6, dict(filters=(16, 32), hidden=(64,))
else:  # the quickstart's 100 years on a 24 x 48 grid
    DATA, EPOCHS, LONG_EPOCHS, LARGE = [], 25, 60, dict(filters=(32, 64), hidden=(128,))
QUIET = ["output.progress=false"]

# %% [markdown]
# ## The data and what the network sees
#
# `configs/quickstart.yaml` describes the experiment: inputs `sst` and `heat_content` over the
# last 3 months, target `nino34` at leads of 1, 3 and 6 months, and three *chronological*
# splits (train on the early decades, tune on the next, test on the last) separated by a gap,
# so that no month's information leaks into the test years through ENSO's persistence.
# `cm.pipeline.prepare` loads the data, checks it, and normalizes every grid point with
# statistics from the training years only (here monthly anomalies: the seasonal cycle is
# removed).

# %%
cfg = cm.config.load("../configs/quickstart.yaml", overrides=[*DATA, *QUIET])
exp = cm.pipeline.prepare(cfg)
print("input per sample (steps, lat, lon, channels):", exp.spec.input_shape)
print("output per sample (leads):", exp.spec.output_shape)
print({split: len(a) for split, a in exp.anchors.items()}, "samples per split")

# %% [markdown]
# The channels are SST and heat content (plus a mask channel that tells the network where the
# data are missing, over land). Here are both fields at the warmest month of the record,
# as anomalies from the training years' seasonal cycle:

# %%
nino = exp.raw["nino34"]
peak = int(nino.argmax(dim="time"))
anomaly = exp.dataset.isel(time=peak)
maps.plot_panels(
    [
        maps.Panel("SST anomaly", anomaly["sst"].values, "diverging", units="std. dev."),
        maps.Panel(
            "heat content anomaly", anomaly["heat_content"].values, "diverging", units="std. dev."
        ),
    ],
    exp.raw["lat"].values,
    exp.raw["lon"].values,
    title=f"Inputs at {str(exp.time[peak])[:7]}, Niño3.4 = {float(nino[peak]):.1f} degC",
)

# %% [markdown]
# A warm tongue along the equator in the east (El Niño) and a deep thermocline (positive heat
# content) across the basin. Months *before* a warm event the heat content anomaly already
# builds up in the west and along the equator while the SST is still neutral: the "recharge"
# the network can learn to read.
#
# ## Training, and reading the loss curves
#
# `cm.models.build` makes the Ham et al. CNN (`[conv -> tanh -> max-pool] x 2 -> dense`) for
# the experiment's shapes; `cm.train.fit` trains it with the config's optimizer, evaluates the
# validation loss after every epoch, keeps the parameters of the best epoch, and stops when
# the validation loss has not improved for `train.patience` epochs (**early stopping**). The
# history it returns is the first thing to look at.


# %%
def train(overrides, *, seed=0, **hyper):
    """Train the CNN of `cfg` with `overrides`; return the fitted model and its history."""
    c = cm.config.load("../configs/quickstart.yaml", overrides=[*DATA, *QUIET, *overrides])
    model = cm.models.build("cnn", exp.spec, rngs=nnx.Rngs(seed), **hyper)
    result = cm.train.fit(
        model,
        exp.loader("train", training=True),
        exp.loader("val"),
        c.train,
        seed=seed,
        progress=False,
    )
    return model, result


model, result = train([f"train.epochs={EPOCHS}"], filters=(16, 32), hidden=(32,), dropout=0.1)
plots.plot_loss_curve(result.history)

# %% [markdown]
# Both losses fall at first: the network is learning structure that holds beyond the training
# years. Where the validation loss turns up while the training loss keeps falling, the network
# has begun to over-fit (below); the dotted line marks the epoch whose parameters `fit` keeps.
# Losses are in normalized units (the target divided by its training standard deviation), so
# 1.0 is what forecasting the climatological mean would score.
#
# **Under-fitting** is a model too small (or trained too briefly) to capture the signal: train
# and validation losses stay high together. **Over-fitting** is a model that memorizes the
# training years: its training loss keeps falling while the validation loss turns up. We
# provoke both: a network with 2 filters and 2 hidden units, and a large one trained long with
# a high learning rate, no dropout and no early stopping.

# %%
_, small = train([f"train.epochs={EPOCHS}"], filters=(2,), hidden=(2,), dropout=0.0)
_, large = train(
    [
        f"train.epochs={LONG_EPOCHS}",
        "train.patience=null",
        "train.lr=0.003",
        "train.schedule=constant",
    ],
    **LARGE,
    dropout=0.0,
)
for name, r in [("small (2 filters)", small), ("large, no early stop", large)]:
    h = r.history
    best = min(range(len(h)), key=lambda i: h[i]["val_loss"])
    print(
        f"{name:>22}: train {h[-1]['train_loss']:.3f}, validation {h[-1]['val_loss']:.3f} "
        f"at the last epoch; best validation {h[best]['val_loss']:.3f} at epoch "
        f"{h[best]['epoch']}"
    )
plots.plot_loss_curve(large.history)

# %% [markdown]
# The large network's training loss goes on falling after its best validation epoch (the
# dotted line) while its validation loss stalls or rises: from there on it learns the noise of
# the training years. Early stopping keeps the parameters of the best validation epoch, which
# is why `fit` returns them rather than the last ones; `train.patience` sets how many epochs
# without improvement it waits. Dropout and fewer parameters are the other remedies.
#
# Note that the validation years chose the epoch, so the validation loss is now optimistic:
# the honest score of the chosen model comes from the test years, which nothing has touched.
#
# ## Skill by lead, against the forecasts we get for free
#
# A forecast is only skilful relative to a reference. Two come free: **persistence** (the
# anomaly stays what it is now) and **climatology** (the average for the calendar month). The
# regression task forecasts the test years with the model and the baselines named in
# `eval.baselines`, and scores them in physical units: RMSE (degC) and the anomaly correlation
# coefficient (ACC, 1 is perfect, 0 is no skill).

# %%
predictions, scores = forecast_and_score(exp, cm.pipeline.TrainedModel.from_module(model))
for lead in map(str, cfg.data.leads):
    row = ", ".join(f"{p} {scores[p]['acc'][lead]:.2f}" for p in scores)
    print(f"lead {lead} months, ACC: {row}")
plots.plot_skill_by_lead(scores, lead_unit=style.time_step_unit(exp.time), units="degC")

# %% [markdown]
# Persistence is hard to beat at one month, because ENSO evolves slowly; its skill decays
# with lead as events grow and decay. The CNN's advantage should grow with lead, because the
# heat content tells it where the system is *going*. (The numbers printed come from however
# long this notebook trained: a few epochs on 25 years in its fast mode, 70 years otherwise.)
#
# The forecasts themselves, at the longest lead, against what happened:

# %%
import matplotlib.pyplot as plt  # noqa: E402

lead = cfg.data.leads[-1]
at_lead = predictions.sel(lead=lead)
fig, ax = plt.subplots(figsize=(8, 3), layout="constrained")
valid = at_lead["valid_time"].values
ax.plot(valid, at_lead["observed"], "k", label="observed")
for name in ("model", "persistence"):
    ax.plot(valid, at_lead[name], label=f"{name}, {lead} months ahead")
ax.set(ylabel="Niño3.4 (degC)", title="Test years: forecasts verifying at each month")
ax.legend(fontsize="small")
plt.show()

# %% [markdown]
# Persistence is the observed curve shifted right by the lead: it always arrives late. A model
# with skill turns with (or before) the observations.
#
# **Takeaways.** Look at the loss curves before any score; choose the epoch on validation data
# and report on untouched test data; always compare with persistence and climatology at every
# lead. `climml run configs/quickstart.yaml` does all of this in one command and writes the
# same figures into the run directory; notebook 8 asks *which* inputs this model relies on.
