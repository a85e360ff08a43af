# %% [markdown]
# # 8. Explainability: which inputs does a model rely on, and when do the answers mislead?
#
# A skilful model is more convincing, and more useful to science, when we can say *what* it
# uses. Two families of tools answer that for any trained network:
#
# - **permutation importance** (Breiman 2001; McGovern et al. 2019): shuffle one input across
#   samples, breaking its link to the target, and measure how much the score degrades;
# - **gradient (saliency) maps** (Simonyan et al. 2014; Toms et al. 2020): the derivative of the
#   output with respect to every input value, a map of local sensitivity.
#
# Both answer a narrower question than it seems, and both can mislead. We start with a problem
# whose answer we know, so we can see when they do.

# %%
import dataclasses
import os

import jax
import numpy as np
import pandas as pd
import xarray as xr

import climml as cm
from climml.viz import importance

FAST = os.environ.get("CLIMML_NOTEBOOK_FAST") == "1"  # the test suite's shrunken run
N = 1500 if FAST else 6000  # samples of the controlled problem
EPOCHS = 8 if FAST else 40
REPEATS = 3 if FAST else 10

# %% [markdown]
# ## A problem with a known answer, and correlated inputs
#
# Five inputs, one target (all standardized):
#
# | input | role |
# |---|---|
# | `nino34` | the main signal |
# | `nino3` | a near copy of `nino34` (correlation ~0.99): the same information twice |
# | `heat_content` | an independent signal, weaker |
# | `wind` | an independent signal, weaker still |
# | `noise` | unrelated |
#
# `target = nino34 + 0.6 heat_content + 0.3 wind + noise`. A model cannot tell which of the two
# copies is "the real one", and neither can we: the honest statement is that the *pair* carries
# the main signal. This situation is the rule in climate data (neighbouring grid points, related
# indices).

# %%
rng = np.random.default_rng(0)
nino34, heat, wind, noise = rng.standard_normal((4, N))
inputs = {
    "nino34": nino34,
    "nino3": nino34 + 0.15 * rng.standard_normal(N),
    "heat_content": heat,
    "wind": wind,
    "noise": noise,
}
target = nino34 + 0.6 * heat + 0.3 * wind + 0.4 * rng.standard_normal(N)
names = list(inputs)
ds = xr.Dataset(
    {k: ("time", v.astype(np.float32)) for k, v in {**inputs, "target": target}.items()},
    coords={"time": pd.date_range("2000-01-01", periods=N, freq="D")},
)
print(
    "correlation of nino34 and nino3:", round(float(np.corrcoef(nino34, inputs["nino3"])[0, 1]), 3)
)

# %% [markdown]
# We train an MLP on it through the ordinary pipeline: `cm.config.from_dict` builds the config
# (the same keys as the YAML files) and an in-memory `xr.Dataset` is a valid `data.source`.

# %%
days = ds["time"].dt.strftime("%Y-%m-%d").values
third = N // 3
cfg = cm.config.from_dict(
    {
        "data": {
            "inputs": names,
            "target": "target",
            "input_steps": 1,
            "leads": [0],
            "splits": {
                "train": [days[0], days[third]],
                "val": [days[third + 1], days[2 * third]],
                "test": [days[2 * third + 1], days[-1]],
            },
            "gap": 0,
            "batch_size": 64,
            "mask_channel": False,
        },
        "model": {"name": "mlp", "hidden": [32, 32]},
        "train": {"lr": 0.003, "epochs": EPOCHS, "patience": 5},
        "output": {"progress": False},
    }
)
cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=ds))  # our Dataset
exp = cm.pipeline.prepare(cfg)
model = cm.pipeline.build_model(exp)
cm.train.fit(
    model, exp.loader("train", training=True), exp.loader("val"), cfg.train, seed=0, progress=False
)
predict = cm.pipeline.TrainedModel.from_module(model).predict_fn()
test = [b for b in exp.loader("test")]
keep = np.concatenate([np.asarray(b.weight) > 0 for b in test])  # drop the padding rows
x = np.concatenate([np.asarray(b.x) for b in test])[keep]  # (samples, 1 step, 5 inputs)
y = np.concatenate([np.asarray(b.y) for b in test])[keep]  # (samples, 1 lead)
print("test RMSE (normalized units):", round(float(cm.metrics.rmse(predict(x), y)), 3))

# %% [markdown]
# ## Single-pass and multi-pass permutation importance
#
# **Single pass**: permute each input alone (the others intact) and record the score; the
# larger the RMSE with an input permuted, the more the model relies on it.
#
# **Multi pass** (Lakshmanan et al. 2015): find the most important input, *leave it permuted*,
# then ask again which of the remaining inputs hurts most when permuted on top of it, and so on.
# Each step measures what an input adds given that the ones above it are already gone.
#
# `cm.explain.permutation_importance` does both, scoring all candidates of a pass in one
# vectorized call, with `n_repeats` permutations per candidate.

# %%
result = cm.explain.permutation_importance(
    predict,
    x,
    y,
    cm.metrics.rmse,
    key=jax.random.key(0),
    feature_names=names,
    n_repeats=REPEATS,
)
for prefix in ("singlepass", "multipass"):
    order = np.argsort(result[f"{prefix}_rank"].values)
    print(f"{prefix:>10}: " + " > ".join(names[i] for i in order))
importance.plot_importance(result, score_name="RMSE (normalized units)")

# %% [markdown]
# In the **single-pass** ranking the two copies do not look alike: typically the model leans on
# one of them and the other falls below `heat_content` (or further), although it carries the
# same information. When one copy is permuted, the model still gets part of that information
# from the other, so neither alone looks as important as the pair is. Read naively,
# single-pass importance says "`nino3` matters less than heat content".
#
# In the **multi-pass** ranking, once the first copy is permuted and frozen, the second one
# becomes indispensable and jumps up the ranking. Multi-pass is not the whole truth either: it
# is greedy (an early choice conditions everything after it), its later ranks are importances
# *given* that the earlier inputs are gone, and which of the two copies comes first is an
# accident of the training.
#
# Two more traps, common to both: permuting one of two correlated inputs creates combinations
# that never occur (a strong `nino34` with a neutral `nino3`), so the model is scored on inputs
# it never saw; and the importance is that of **this model**, not of the physical world: a
# model that ignored `wind` would rank it last however real its effect. Permute correlated
# inputs together (`groups=`) when the question is about the information they share.

# %%
grouped = cm.explain.permutation_importance(
    predict,
    x,
    y,
    cm.metrics.rmse,
    key=jax.random.key(0),
    n_repeats=REPEATS,
    multipass=False,
    groups={"nino34 + nino3": [0, 1], "heat_content": [2], "wind": [3], "noise": [4]},
)
print(grouped["singlepass_score"].to_series().sort_values(ascending=False).round(3))

# %% [markdown]
# Permuted together, the pair is by far the most important group, as it should be.
#
# ## Gradient maps on a gridded model
#
# For a model of maps, each input is a grid of values; the gradient of the forecast with respect
# to the input tells, for one sample, how much a small change at each grid point would move the
# forecast. We train the ENSO CNN of notebook 2 (shrunken for speed) and average its saliency
# over the test samples for the 6-month lead.

# %%
OVERRIDES = ["output.progress=false", "train.epochs=3" if FAST else "train.epochs=25"]
if FAST:
    OVERRIDES += [
        "data.source_args={n_months: 480, seed: 0, nlat: 12, nlon: 24}",
        "data.splits={train: [1870-01, 1894-12], val: [1895-01, 1901-12],"
        " test: [1902-01, 1909-12]}",
    ]
enso_cfg = cm.config.load("../configs/quickstart.yaml", overrides=OVERRIDES)
enso = cm.pipeline.prepare(enso_cfg)
cnn = cm.pipeline.build_model(enso)
# A second network with the same initial (random) weights, kept untrained for comparison.
untrained = cm.pipeline.TrainedModel.from_module(cm.pipeline.build_model(enso)).predict_fn()
cm.train.fit(
    cnn,
    enso.loader("train", training=True),
    enso.loader("val"),
    enso_cfg.train,
    seed=0,
    progress=False,
)
trained = cm.pipeline.TrainedModel.from_module(cnn).predict_fn()
x_maps = np.concatenate([np.asarray(b.x)[np.asarray(b.weight) > 0] for b in enso.loader("test")])
lead = enso_cfg.data.leads.index(6)
channels = list(enso_cfg.data.inputs)  # sst, heat_content (then the mask channels)


def mean_saliency(predict_fn):
    """Mean over test samples of d forecast(6 months) / d input, last input month, (lat, lon, C)."""
    grads = cm.explain.saliency(predict_fn, x_maps, output_fn=lambda p: p[lead])
    return np.asarray(grads.mean(axis=0)[-1, ..., : len(channels)])


lat, lon = enso.raw["lat"].values, enso.raw["lon"].values
importance.plot_saliency(
    mean_saliency(trained),
    lat=lat,
    lon=lon,
    names=channels,
    lead="6 months",
    units="per std. dev.",
    title="Trained CNN: saliency",
)

# %% [markdown]
# Where the map is red, raising that input (in standard deviations) raises the forecast Niño3.4
# six months later. A sanity check every saliency map needs (Adebayo et al. 2018): the same
# picture for the **untrained** network, with random weights. If it looks similar, the map shows
# the architecture (its receptive fields, its padding) rather than anything learned.

# %%
importance.plot_saliency(
    mean_saliency(untrained),
    lat=lat,
    lon=lon,
    names=channels,
    lead="6 months",
    units="per std. dev.",
    title="Untrained CNN (random weights): saliency",
)

# %% [markdown]
# How gradient maps mislead:
#
# - they are **local**: a derivative at each sample's input, blind to what a large change would
#   do (a saturated `tanh` unit has zero gradient however important its input);
# - the **mean** over samples cancels opposite signs (El Niño and La Niña samples may respond with
#   opposite sensitivity), so also look at individual samples or at mean absolute values
#   (`absolute=True`);
# - sensitivity is not contribution: a large gradient where the input is always near zero
#   contributes nothing; `method="input_x_gradient"` weights the gradient by the anomaly
#   actually present (Toms et al. 2020);
# - a structured picture is not proof of learning: compare with the untrained network above.
#
# **Takeaways.** Use multi-pass (and grouped) permutation importance when inputs are correlated,
# and read each rank as conditional on those above it; check gradient maps against a random
# network and against input x gradient. Explanations describe the model; agreement with known
# physics is a check on the model, not a discovery about the physics. `climml explain CONFIG`
# (or `eval.explain` in a config) writes both for any run.
