# %% [markdown]
# # 5. Autoencoders: compression, reconstruction error and anomaly maps
#
# An **autoencoder** is trained to reproduce its input through a bottleneck: an encoder
# (convolutions and pooling) squeezes a map into a short vector, the *latent*, and a decoder
# rebuilds the map from it. It cannot copy; it must learn what is typical of the maps it was
# trained on. Where a new map is *not* typical, the reconstruction fails, and the
# **reconstruction error** becomes a map of what is unusual: an unsupervised anomaly detector.
#
# Climate science has had a linear version for decades: **EOF analysis** (principal component
# analysis of a field over time). Keeping the first k EOFs is the best *linear* compression to
# k numbers per map. So the honest question for an autoencoder with a k-number latent is:
# does it beat k EOFs?
#
# The maps are integrated water vapour from climml's synthetic extreme weather: a smooth
# large-scale moisture field in which narrow atmospheric rivers and compact cyclones come and
# go (and are labelled, which lets us check what the anomaly maps find).

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

import climml as cm
from climml.tasks import reconstruction
from climml.viz import maps

FAST = os.environ.get("CLIMML_NOTEBOOK_FAST") == "1"  # the test suite's shrunken run
if FAST:  # 40 days of 6-hourly maps on a 16 x 32 grid, 2 epochs
    OVERRIDES = [
        "data.source_args={n_times: 160, nlat: 16, nlon: 32, lat_max: 48.0, seed: 1}",
        "data.splits={train: [2000-01-01, 2000-01-25], val: [2000-01-28, 2000-02-02],"
        " test: [2000-02-04, 2000-02-09]}",
        "model.filters=[8, 16]",
        "train.epochs=2",
    ]
else:
    OVERRIDES = []
QUIET = ["output.progress=false", "output.plots=false"]
workdir = Path(tempfile.mkdtemp(prefix="climml_autoencoder_"))

cfg = cm.config.load("../configs/autoencoder.yaml", overrides=[*OVERRIDES, *QUIET])
exp = cm.pipeline.prepare(cfg)
LATENT = cfg.model.latent_dim
print("map shape:", exp.spec.input_shape[1:3], "->", LATENT, "latent numbers per map")

# %% [markdown]
# ## Training the autoencoder
#
# The model is `configs/autoencoder.yaml`'s convolutional autoencoder, trained with the MSE
# between input and reconstruction (on anomalies: each grid point's training mean and standard
# deviation removed). The reconstruction task then reconstructs the test maps and writes, in
# physical units, the reconstruction, the squared error per pixel (`error`, the anomaly map) and
# its area-weighted mean per map (`anomaly_score`).

# %%
model = cm.pipeline.build_model(exp)
cm.train.fit(
    model, exp.loader("train", training=True), exp.loader("val"), cfg.train, seed=0, progress=False
)
scores = reconstruction.evaluate(exp, cm.pipeline.TrainedModel.from_module(model), workdir)
test = xr.open_zarr(workdir / "predictions.zarr").isel(lead=0).load()
units = test["observed"].attrs.get("units", "")
print(
    f"autoencoder test RMSE: {scores['model']['rmse']['0']:.2f} {units}; "
    f"climatology: {scores['climatology']['rmse']['0']:.2f} {units}"
)

# %% [markdown]
# ## The linear reference: EOF truncation
#
# `cm.data.EOF` computes EOFs the way the climate literature does: anomalies from the time mean,
# each grid point weighted by `sqrt(cos(lat))` so that variance is counted per unit area. We fit
# them on the training maps only and keep as many patterns as the autoencoder has latent
# numbers, then reconstruct the same test maps from their first `LATENT` principal components.

# %%
iwv = exp.raw["iwv"]
train_times = exp.time[exp.anchors["train"]]
eof = cm.data.EOF.fit(iwv.sel(time=train_times), modes=LATENT)
observed = iwv.sel(time=test["valid_time"].values)
eof_recon = eof.reconstruct(observed)
explained = eof.explained_variance_ratio
print(
    f"{LATENT} EOFs explain {float(explained.sum()):.1%} of the training variance "
    f"(the first three: {', '.join(f'{v:.1%}' for v in explained.values[:3])})"
)
eof_rmse = float(cm.metrics.xr.rmse(eof_recon, observed, dim=["time", "lat", "lon"]))
print(
    f"test RMSE with {LATENT} EOFs: {eof_rmse:.2f} {units}; "
    f"autoencoder: {scores['model']['rmse']['0']:.2f} {units}"
)

# %% [markdown]
# Both numbers are area-weighted RMSEs over the same test maps. On this data the EOFs win, in
# the fast mode and with the config's full training alike (2.65 against 3.03 kg m-2 there). A
# nonlinear decoder can in principle place sharp features that a sum of fixed patterns can only
# smear, but learning that takes far more maps than the few hundred here, while EOFs need no
# training at all. Always report the EOF reference next to an autoencoder: it is the bar.
#
# ## Anomaly maps
#
# The map with the largest autoencoder anomaly score, its two reconstructions and their
# squared errors. The observed map and the reconstructions share one colour range, and so do
# the two error maps, so equal colours mean equal values.

# %%
t = int(test["anomaly_score"].argmax("time"))
when = test["valid_time"].values[t]
eof_error = (eof_recon - observed) ** 2
field, error = (
    dict(units=units, group="field"),
    dict(kind="error", units=f"({units})²", group="err"),
)
maps.plot_panels(
    [
        maps.Panel("observed", test["observed"].values[t], **field),
        maps.Panel("autoencoder", test["model"].values[t], **field),
        maps.Panel(f"{LATENT} EOFs", eof_recon.sel(time=when).values, **field),
    ],
    test["lat"].values,
    test["lon"].values,
    title=f"Water vapour at {str(when)[:16]}",
)

# %%
# exp.raw holds only what the config reads; the labels come with the same generated dataset
all_labels = cm.data.synthetic.extreme_weather(**cfg.data.source_args)["label"]
labels = all_labels.sel(time=when)
maps.plot_panels(
    [
        maps.Panel("autoencoder error", test["error"].values[t], **error),
        maps.Panel("EOF error", eof_error.sel(time=when).values, **error),
        maps.Panel(
            "labelled events",
            labels.values,
            "classes",
            class_names=("background", "cyclone", "river"),
        ),
    ],
    test["lat"].values,
    test["lon"].values,
    title="Squared reconstruction error: where the map is unusual",
)

# %% [markdown]
# The errors concentrate where the map holds something narrow and intense, the labelled rivers
# and cyclones, because neither compression has room for them. Does the error *find* the events?
# Treat the per-pixel squared error as a score for "this pixel is part of an event" and compute
# the ROC AUC against the labels (notebook 7): 0.5 is no better than chance.

# %%
event = (all_labels.sel(time=test["valid_time"].values) > 0).values.astype(np.float32)
for name, err in [("autoencoder", test["error"].values), (f"{LATENT} EOFs", eof_error.values)]:
    auc = float(cm.metrics.roc_auc(err.ravel(), event.ravel()))
    print(f"{name:>12}: AUC of the squared error for event pixels = {auc:.3f}")

# %% [markdown]
# Neither method was told what an event is; both flag them far better than chance, because
# events are what the dominant, smooth patterns leave out. Caveats: the error also flags
# anything else rare (a data glitch, a new climate), and it is large where the field is
# variable anyway, so compare it with the error typical for that place and season before
# calling a pixel anomalous.
#
# **Takeaways.** An autoencoder's reconstruction error is an anomaly map for free; a truncated
# EOF expansion with the same number of numbers is the baseline it must beat; check what the
# anomalies correspond to with labels when you have any.
