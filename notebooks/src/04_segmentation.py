# %% [markdown]
# # 4. Segmentation: finding cyclones and atmospheric rivers with a U-Net
#
# Instead of one number per map, **segmentation** predicts a class for every grid cell: here
# background, tropical cyclone or atmospheric river, as ClimateNet (Prabhat et al. 2021) does
# on climate-model output. The model is a **U-Net** (Ronneberger et al. 2015): an encoder of
# convolutions and pooling that sees ever larger regions, a decoder that upsamples back to the
# full grid, and *skip connections* that hand the decoder the fine detail the encoder pooled
# away.
#
# The hard part is not the network but the **class imbalance**: cyclones cover well under 1 %
# of the pixels. This notebook shows how that breaks naive training and scoring, and what the
# losses and scores built for it do.
#
# The data are climml's synthetic extreme weather (`cm.data.synthetic.extreme_weather`): 6-hourly
# maps of integrated water vapour, 850 hPa wind and sea-level pressure in which cyclones
# (pressure lows with a warm, moist core and rotating winds) and atmospheric rivers (long,
# narrow plumes of vapour) move and evolve, labelled from the fields' physics.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np

import climml as cm
from climml.tasks import segmentation
from climml.viz import maps, plots

FAST = os.environ.get("CLIMML_NOTEBOOK_FAST") == "1"  # the test suite's shrunken run
if FAST:  # 40 days of 6-hourly maps on a 16 x 32 grid, 2 epochs
    DATA = [
        "data.source_args={n_times: 160, nlat: 16, nlon: 32, lat_max: 48.0, cyclones: 4.0,"
        " rivers: 4.0, seed: 0}",
        "data.splits={train: [2000-01-01, 2000-01-25], val: [2000-01-28, 2000-02-02],"
        " test: [2000-02-04, 2000-02-09]}",
        "model.base_filters=8",
        "model.depth=1",
        "train.epochs=2",
    ]
else:
    DATA = []
QUIET = ["output.progress=false", "output.plots=false", "output.save_predictions=false"]
workdir = Path(tempfile.mkdtemp(prefix="climml_unet_"))

cfg = cm.config.load("../configs/unet_extremes.yaml", overrides=[*DATA, *QUIET])
exp = cm.pipeline.prepare(cfg)
labels = exp.raw["label"]
names = segmentation.class_names(labels, cfg.data.num_classes)
counts = np.bincount(labels.values.ravel(), minlength=len(names))
for name, n in zip(names, counts, strict=True):
    print(f"{name:>20}: {n / counts.sum():7.3%} of the pixels")

# %% [markdown]
# ## What the network sees and what it must find
#
# One time step with cyclones: water vapour and pressure (two of the four input channels) and
# the labels.

# %%
t = int((labels == 1).sum(("lat", "lon")).argmax("time"))
snapshot = exp.raw.isel(time=t)
maps.plot_panels(
    [
        maps.Panel(
            "water vapour", snapshot["iwv"].values, units=snapshot["iwv"].attrs.get("units", "")
        ),
        maps.Panel(
            "sea-level pressure",
            snapshot["slp"].values,
            units=snapshot["slp"].attrs.get("units", ""),
        ),
        maps.Panel("labels", snapshot["label"].values, "classes", class_names=tuple(names)),
    ],
    exp.raw["lat"].values,
    exp.raw["lon"].values,
    title=str(exp.time[t])[:16],
)

# %% [markdown]
# ## The accuracy trap
#
# A "model" that answers background everywhere (the `majority` baseline) is right on ~98 % of
# the pixels and has found nothing. Pixel accuracy rewards it; the scores for segmentation do
# not:
#
# - **IoU** (intersection over union, or Jaccard index) of a class: the pixels both predicted
#   and labelled as the class, divided by the pixels either predicted or labelled as it. It is
#   the CSI of notebook 7 for that class; 0 if the class is never found, 1 if the masks match.
# - **precision** and **recall** per class, and the **confusion matrix**, which shows *what*
#   each class is mistaken for.
#
# ## Losses for imbalanced classes
#
# Plain **cross-entropy** averages a loss over pixels, so the background dominates: the easiest
# way to lower it is to predict background everywhere. Two remedies, often combined:
#
# - **class weights** multiply each pixel's cross-entropy by a weight of its true class
#   (`train.class_weights`), so a missed cyclone pixel costs as much as ten background ones;
# - the **Dice** loss, `1 - 2|P ∩ T| / (|P| + |T|)` computed with probabilities, scores the
#   *overlap* per class and averages over classes: a small class counts as much as a large one.
#
# We train the same U-Net twice: with plain cross-entropy, and with the config's weighted
# cross-entropy plus Dice.


# %%
def train_and_score(loss_overrides):
    c = cm.config.load("../configs/unet_extremes.yaml", overrides=[*DATA, *QUIET, *loss_overrides])
    model = cm.pipeline.build_model(exp)
    cm.train.fit(
        model,
        exp.loader("train", training=True),
        exp.loader("val"),
        c.train,
        seed=0,
        progress=False,
    )
    trained = cm.pipeline.TrainedModel.from_module(model)  # compiled once, used below too
    return trained, segmentation.evaluate(exp, trained, workdir)


plain_model, plain = train_and_score(["train.loss=cross_entropy", "train.class_weights=null"])
weighted_model, weighted = train_and_score([])
rows = {
    "majority (all background)": weighted["majority"],
    "plain cross-entropy": plain["model"],
    "weighted CE + Dice": weighted["model"],
}
print(f"{'':>27} {'accuracy':>9} " + " ".join(f"{'IoU ' + n[:12]:>17}" for n in names))
for label, s in rows.items():
    print(
        f"{label:>27} {s['accuracy']['all']:9.3f} "
        + " ".join(f"{s['iou'][n]:17.3f}" for n in names)
    )

# %% [markdown]
# Accuracy barely separates the three. The IoU of the rare classes is what to compare: the
# all-background answer scores 0 there by construction, and a trained model earns its keep only
# where it rises above 0. With the config's full training both losses find the events, and the
# weighted one finds more of them (cyclone IoU 0.79 against 0.71, atmospheric rivers 0.83
# against 0.77, at the same 99.7 % accuracy): the rare classes weigh more in what it minimizes.
# This notebook's fast mode trains a shallow U-Net for two epochs on a few weeks of maps, which
# may find nothing yet; `climml run configs/unet_extremes.yaml` trains properly.
#
# ## The confusion matrix
#
# Rows are the true classes, columns the predicted ones, each row normalized to 1: the diagonal
# is the recall of each class, and the off-diagonal cells say what a class is mistaken for.


# %%
def confusion(model):
    """Test-split confusion matrix of `model`'s masks against the labels."""
    predicted = cm.predict(model, exp, split="test")
    truth = labels.sel(time=predicted["valid_time"].values.ravel())
    return cm.metrics.confusion_matrix(
        predicted["model"].values.ravel(), truth.values.ravel(), num_classes=len(names)
    )


plots.plot_confusion_matrix(
    confusion(weighted_model), class_names=names, title="Weighted CE + Dice, test split"
)

# %%
plots.plot_confusion_matrix(
    confusion(plain_model), class_names=names, title="Plain cross-entropy, test split"
)

# %% [markdown]
# ## The masks on a map
#
# Finally the masks themselves at the test time with most cyclone pixels: the labels, then
# each model's prediction.

# %%
predicted = {"plain": cm.predict(plain_model, exp), "weighted": cm.predict(weighted_model, exp)}
valid = predicted["plain"]["valid_time"].values[:, 0]
i = int((labels.sel(time=valid) == 1).sum(("lat", "lon")).argmax("time"))
maps.plot_panels(
    [
        maps.Panel("labels", labels.sel(time=valid[i]).values, "classes", class_names=tuple(names)),
        maps.Panel(
            "plain cross-entropy",
            predicted["plain"]["model"].values[i, 0],
            "classes",
            class_names=tuple(names),
        ),
        maps.Panel(
            "weighted CE + Dice",
            predicted["weighted"]["model"].values[i, 0],
            "classes",
            class_names=tuple(names),
        ),
    ],
    exp.raw["lat"].values,
    exp.raw["lon"].values,
    title=f"Test time {str(valid[i])[:16]}",
)

# %% [markdown]
# **Takeaways.** With rare classes, never judge by pixel accuracy: report per-class IoU,
# precision and recall and look at the confusion matrix. Weight the loss towards the rare
# classes (class weights) or use an overlap loss (Dice, Jaccard), and compare with the
# all-background baseline, which the segmentation task scores alongside every model.
