# %% [markdown]
# # 6. Radar nowcasting: persistence, optical flow and a U-Net
#
# A **nowcast** forecasts precipitation for the next minutes to hours from the latest radar
# images. Its classic baselines need no training at all:
#
# - **Eulerian persistence**: the rain stays where it is;
# - **Lagrangian persistence** (optical-flow extrapolation): estimate the motion field from the
#   last frames and move the rain along it (pysteps' Lucas-Kanade + semi-Lagrangian scheme;
#   climml's `advection` baseline does it in JAX).
#
# A neural network trained with a mean-squared-error loss can beat both on pixel scores, but
# MSE rewards hedging: where the future is uncertain, the average of the possible fields is the
# best bet, and an average of rain fields is a **blurred** rain field. Ravuri et al. (2021,
# DGMR) measured this and trained generative models to keep the small scales. This notebook
# shows the scores radar nowcasting reports (CSI at rain thresholds, FSS, CRPS, by lead) and the
# diagnostic that exposes blur: the **power spectrum**.
#
# The radar is real when it can be found: the three MeteoSwiss rain events of the pysteps example
# data (Pulkkinen et al. 2019, Geosci. Model Dev.; radar composites by MeteoSwiss), 40 frames
# of 5 minutes each, read by `cm.data.real.radar` from the pysteps-data folder named by the
# environment variable `CLIMML_RADAR_DATA` or by pysteps' own data settings, as
# `configs/nowcast_radar.yaml` does (a 256 km square inside radar coverage, here averaged to
# 4 km pixels in fast mode, 2 km otherwise). Without that folder the notebook says so and uses
# climml's synthetic radar instead (`cm.data.synthetic.radar`): rain fields with the
# power-law spatial spectrum of real radar, advected by a smooth wind, growing and decaying, on
# a 1 km grid every 5 minutes.

# %%
import os
import tempfile
from pathlib import Path

import xarray as xr

import climml as cm
from climml.data.real import radar as real_radar
from climml.errors import DataError
from climml.tasks import nowcast
from climml.viz import nowcast as nowcast_plots
from climml.viz import plots

FAST = os.environ.get("CLIMML_NOTEBOOK_FAST") == "1"  # the test suite's shrunken run
try:  # the library's own lookup: $CLIMML_RADAR_DATA, else pysteps' data settings
    real_radar.data_root()
    REAL = True
except DataError as err:
    REAL = False
    print(f"No MeteoSwiss radar found, using the synthetic radar instead ({err})")
config = "../configs/nowcast_radar.yaml" if REAL else "../configs/nowcast_synthetic.yaml"
OVERRIDES = []
if FAST and REAL:  # the same 256 km square averaged to 4 km pixels (64 x 64)
    OVERRIDES = ["data.source_args.coarsen=4"]
elif FAST:  # 8 events of 16 frames on a 32 km grid
    OVERRIDES = ["data.source_args={events: 8, frames: 16, size: 32, lifetime: 240.0, seed: 0}"]
if FAST:  # 2 epochs of a small U-Net
    OVERRIDES += ["train.epochs=2", "model.base_filters=8"]
QUIET = ["output.progress=false", "output.plots=false", "output.save_predictions=true"]
workdir = Path(tempfile.mkdtemp(prefix="climml_nowcast_"))

cfg = cm.config.load(config, overrides=[*OVERRIDES, *QUIET])
exp = cm.pipeline.prepare(cfg)
rain = exp.raw["rain_rate"]
pixel_km = float(abs(rain["x"][1] - rain["x"][0]))
print(
    f"{'MeteoSwiss' if REAL else 'synthetic'} radar: {rain.sizes['time']} frames of "
    f"{rain.sizes['y']} x {rain.sizes['x']} pixels of {pixel_km:g} km, "
    f"every {nowcast.step_minutes(exp):g} minutes; inputs: the last {cfg.data.input_steps} "
    f"frames; leads: {[lead * 5 for lead in cfg.data.leads]} minutes"
)

# %% [markdown]
# ## Training the MSE U-Net and running the baselines
#
# The model is a U-Net (notebook 4) that maps the last 20 minutes of radar to the next 30,
# trained with MSE on `ln(R + 0.1)` (`data.transform: log`: rain rates are very skewed). The
# nowcast task then forecasts every test window with the model and with each baseline of
# `eval.baselines`, and accumulates the scores as sufficient statistics.

# %%
model = cm.pipeline.build_model(exp)
cm.train.fit(
    model, exp.loader("train", training=True), exp.loader("val"), cfg.train, seed=0, progress=False
)
metrics = nowcast.evaluate(exp, cm.pipeline.TrainedModel.from_module(model), workdir)
print("predictors:", list(metrics))
print("some scores:", sorted(metrics["model"])[:8], "...")

# %% [markdown]
# ## Scores by lead
#
# - **CSI** at a rain-rate threshold (here 1 mm/h): hits / (hits + misses + false alarms) of the
#   event "rain above the threshold", as in notebook 7;
# - **FSS** (fractions skill score, Roberts and Lean 2008): compares the *fraction* of pixels
#   above the threshold in neighbourhoods of growing size, so a forecast that is right but a few
#   kilometres off is not punished twice (a miss and a false alarm), as CSI does;
# - **CRPS** per pixel in mm/h (for a deterministic forecast, its mean absolute error).

# %%
nowcast_plots.plot_skill_by_lead(metrics)

# %% [markdown]
# How to read the panels. Eulerian persistence loses skill as the rain moves and evolves;
# extrapolation along the estimated motion should lose it more slowly when the rain mostly
# moves, and no faster than persistence when growth and decay dominate or the motion estimate
# from a few small frames is poor. Watch the CRPS panel against the CSI panel: a forecast that
# predicts almost no rain can have the lowest mean absolute error where most pixels are dry
# while its CSI is zero, which is what an under-trained network does (this notebook's fast mode
# trains two epochs on a few events). Pixel errors alone cannot tell a useful nowcast from a
# timid one.
#
# ## Power spectra: the blur that scores reward
#
# The radially averaged power spectrum says how much variance the field has at each
# wavelength. Real rain has a power law: plenty of small-scale structure. A blurred forecast
# loses power at short wavelengths, and its curve drops below the observations'.

# %%
spectra = xr.open_dataset(workdir / "spectra.nc")
nowcast_plots.plot_spectra(spectra)

# %% [markdown]
# Persistence has the spectrum of the last observed frame. Advection moves that frame and
# loses some power on the way (each semi-Lagrangian step interpolates, and rain leaves the
# domain). An MSE-trained network loses the most at short wavelengths, more with lead time: the
# price of minimizing squared error under uncertainty. A generative nowcaster (GAN, diffusion)
# aims to score well *and* keep the observed spectrum; an ensemble of such forecasts is then
# verified with the CRPS and rank histograms of notebook 7.
#
# ## One forecast, tiled
#
# The test window with the most rain, observed and forecast at every lead:

# %%
forecasts = xr.open_zarr(workdir / "predictions.zarr").load()
wettest = int(forecasts["observed"].sum(("lead", "y", "x")).argmax("time"))
window = forecasts.isel(time=wettest)
minutes = [f"{lead * 5}" for lead in cfg.data.leads]
nowcast_plots.plot_example(
    {name: window[name].values for name in window.data_vars}, minutes, units="mm/h"
)

# %% [markdown]
# The same diagnostic in one figure for all the fields of that window, with climml's generic
# spectrum plot (any gridded fields, wavelength in km):

# %%
last = {name: window[name].isel(lead=-1).values for name in window.data_vars}
plots.plot_power_spectrum(
    last,
    spacing_km=pixel_km,
    units="mm/h",
    title=f"Power spectra {minutes[-1]} minutes ahead, one window",
)

# %% [markdown]
# **Takeaways.** Always compare a nowcasting network with persistence and optical-flow
# extrapolation; read CSI and FSS at several thresholds and scales, and look at power spectra
# (and forecast maps) before trusting a model that wins on pixel scores: it may win by
# blurring. `climml run configs/nowcast_radar.yaml` (real MeteoSwiss radar) or
# `climml run configs/nowcast_synthetic.yaml` writes all of these figures.
