# %% [markdown]
# # 6. Radar nowcasting: optical flow, an MSE U-Net and a GAN ensemble
#
# A **nowcast** forecasts precipitation for the next minutes to hours from the latest radar
# images. Its classic baselines need no training at all:
#
# - **Eulerian persistence**: the rain stays where it is;
# - **Lagrangian persistence** (optical-flow extrapolation): estimate the motion field from the
#   last frames and move the rain along it (pysteps' Lucas-Kanade + semi-Lagrangian scheme;
#   climml's `advection` baseline does it in JAX);
# - **STEPS** (Bowler et al. 2006, in pysteps): optical flow plus stochastic perturbations of
#   the rain's evolution, scale by scale, an *ensemble* of possible futures (run here when
#   pysteps is installed: `pip install climml[radar]`).
#
# A neural network trained with a mean-squared-error loss can beat them on pixel scores, but
# MSE rewards hedging: where the future is uncertain, the average of the possible fields is the
# best bet, and an average of rain fields is a **blurred** rain field. Ravuri et al. (2021,
# Nature, "DGMR", DeepMind with the UK Met Office) trained a **generative** nowcaster instead:
# a conditional GAN whose forecasts look like radar, and whose different random inputs give an
# ensemble of sharp, possible futures. This notebook trains both networks with climml, shows
# the scores radar nowcasting reports (CSI at rain thresholds, FSS, CRPS, by lead), the
# diagnostic that exposes blur (the **power spectrum**), and the ensemble's calibration (rank
# histogram, spread against error).
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
import importlib.util
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
DATA = []
if FAST and REAL:  # the same 256 km square averaged to 4 km pixels (64 x 64)
    DATA = ["data.source_args.coarsen=4"]
elif FAST:  # 8 events of 16 frames on a 32 km grid
    DATA = ["data.source_args={events: 8, frames: 16, size: 32, lifetime: 240.0, seed: 0}"]
MEMBERS = 4 if FAST else 8  # ensemble members: latent draws of the GAN, STEPS realizations
# the [radar] extra; not in fast mode, which keeps to seconds of work beside compiling
STEPS = importlib.util.find_spec("pysteps") is not None and not FAST
EVAL = [
    f"eval.baselines=[persistence, advection{', steps' if STEPS else ''}]",
    "eval.metrics=[csi, pod, far, fss, crps, spread_skill]",  # spread/skill: ensembles only
    f"eval.nowcast.members={MEMBERS}",
]
UNET = ["train.epochs=2", "model.base_filters=8"] if FAST else []  # 2 epochs, a small U-Net
QUIET = ["output.progress=false", "output.plots=false", "output.save_predictions=true"]
workdir = Path(tempfile.mkdtemp(prefix="climml_nowcast_"))

cfg = cm.config.load(config, overrides=[*DATA, *EVAL, *UNET, *QUIET])
exp = cm.pipeline.prepare(cfg)
rain = exp.raw["rain_rate"]
pixel_km = float(abs(rain["x"][1] - rain["x"][0]))
print(
    f"{'MeteoSwiss' if REAL else 'synthetic'} radar: {rain.sizes['time']} frames of "
    f"{rain.sizes['y']} x {rain.sizes['x']} pixels of {pixel_km:g} km, "
    f"every {nowcast.step_minutes(exp):g} minutes; inputs: the last {cfg.data.input_steps} "
    f"frames; leads: {[lead * 5 for lead in cfg.data.leads]} minutes"
)
if not STEPS:
    print("No STEPS ensemble: fast mode, or pysteps is not installed (pip install climml[radar])")

# %% [markdown]
# ## Training the MSE U-Net and running the baselines
#
# The first model is a U-Net (notebook 4) that maps the last 20 minutes of radar to the next
# 30, trained with MSE on `ln(R + 0.1)` (`data.transform: log`: rain rates are very skewed).
# The nowcast task then forecasts every test window with the model and with each baseline of
# `eval.baselines`, and accumulates the scores as sufficient statistics.

# %%
model = cm.pipeline.build_model(exp)
cm.train.fit(
    model, exp.loader("train", training=True), exp.loader("val"), cfg.train, seed=0, progress=False
)
metrics = nowcast.evaluate(exp, cm.pipeline.TrainedModel.from_module(model), workdir)
print("predictors:", list(metrics))

# %% [markdown]
# ## Why MSE blurs, and what a GAN does instead
#
# Suppose a storm cell will, with equal chances, drift 10 km east or 10 km west. The forecast
# that minimizes the expected squared error is the **conditional mean** of the future given
# the inputs: half a cell at each place, a wider and weaker blob that matches neither possible
# future. The more uncertain the future (longer leads, small cells, growth and decay), the
# more the MSE-optimal forecast smooths; no amount of training or data changes that, since it
# is what the loss asks for. The blur is not a bug of the network but the right answer to the
# question MSE asks.
#
# A **conditional GAN** asks another question: produce a field that a second network, the
# discriminator, cannot tell from a real radar sequence given the same past. A blurred blob is
# easy to tell from radar, so the generator must commit to *one* sharp future; fed a different
# random latent vector, it commits to another. Several draws are an **ensemble**, and its
# spread is the forecast's uncertainty. DGMR's generator (`cm.models.nowcast_gan`, a scaled
# down copy) reads the past frames with a stack of convolutions, turns a Gaussian latent field
# into features, and unrolls a ConvGRU over the leads; a spatial discriminator judges single
# frames, a temporal one judges crops of whole sequences. A GAN alone can produce sharp rain in
# the wrong place, so DGMR adds a **grid-cell regularizer**: the mean of a few samples must stay
# close to the observations, weighted towards heavy rain (`climml.train.adversarial`). That
# regularizer sees only the members' mean, and a conditional generator readily learns to ignore
# its noise, so the members collapse onto one forecast. climml adds the **fair CRPS** of the
# samples to the generator loss (`model.crps_weight`; Pacchiardi & Dutta 2022): a proper score
# of the ensemble itself, lowest when the members spread as much as the future is uncertain.
#
# Training is the same pipeline call as any climml model: `model.name: nowcast_gan` makes
# `cm.pipeline.train` run the adversarial loop (two discriminator steps per generator step,
# each network with its own Adam), and `cm.pipeline.evaluate` scores the generator as an
# ensemble of `eval.nowcast.members` latent draws. Here the generator is tiny (2 base
# channels against DGMR's 24), trains on 32 x 32 pixel crops where it rains (the networks
# are convolutional and the latent noise follows the grid, so it forecasts the full square),
# and for minutes on a CPU where DGMR trained for days on TPUs.

# %%
# configs/nowcast_gan.yaml's CPU size, the generator's learning rate 10x the paper's; fast mode
# leaves out spectral normalization, which doubles the (minute-long) compilation of the steps
SIZE = "base_channels: 2, disc_channels: 4, lr_generator: 0.0005, crps_weight: 20.0"
GAN = [
    f"model={{name: nowcast_gan, {SIZE}{', spectral_norm: false' if FAST else ''}}}",
    "data.crop={size: 32, rain_bias: 0.8}",  # training crops, 80% drawn where it rains
    f"train.epochs={1 if FAST else 10}",
    "eval.baselines=[]",  # scored above
]
gan_cfg = cm.config.load(config, overrides=[*DATA, *EVAL, *GAN, *QUIET])
gan = cm.pipeline.run(gan_cfg, workdir / "gan")  # prepare, train, evaluate
for entry in gan.history[-3:]:
    print(
        f"epoch {entry['epoch']}: generator loss {entry['train_loss']:.3g}, "
        f"grid-cell regularizer on validation {entry['val_loss']:.3g}"
    )

# %% [markdown]
# The GAN's losses do not measure its forecasts (the generator's loss rises when the
# discriminator gets better), so there is no early stopping: the last generator is the
# forecaster. Every forecast of the test windows is saved in physical units; the GAN's have a
# `member` dimension, as have STEPS':

# %%
forecasts = xr.merge(
    [
        xr.open_zarr(workdir / "predictions.zarr").rename(model="U-Net (MSE)"),
        xr.open_zarr(workdir / "gan" / "predictions.zarr")[["model"]].rename(model="GAN"),
    ],
    compat="override",  # the same observations and coordinates in both
).load()
print(forecasts["GAN"].sizes)

# %% [markdown]
# ## Scores by lead
#
# - **CSI** at a rain-rate threshold (here 1 mm/h): hits / (hits + misses + false alarms) of the
#   event "rain above the threshold", as in notebook 7; an ensemble is scored member by member;
# - **FSS** (fractions skill score, Roberts and Lean 2008): compares the *fraction* of pixels
#   above the threshold in neighbourhoods of growing size, so a forecast that is right but a few
#   kilometres off is not punished twice (a miss and a false alarm), as CSI does;
# - **CRPS** per pixel in mm/h. For a deterministic forecast it is the mean absolute error. For
#   an ensemble it is `E|X - y| - E|X - X'| / 2` (members X, X', observation y): the first term
#   is the members' average error, the second **rewards spread**. An ensemble whose members
#   scatter around the truth beats each of its members, while one that scatters where the
#   truth never goes pays in the first term. Of all ways to spread, the honest one (members
#   drawn from the true distribution of the future) scores best: the CRPS is a proper score.

# %%
scores = {("U-Net (MSE)" if name == "model" else name): s for name, s in metrics.items()}
scores["GAN"] = gan.metrics["model"]
nowcast_plots.plot_skill_by_lead(scores)

# %%
last = f"{cfg.data.leads[-1] * 5}"  # minutes
print(f"at +{last} min:")
for name, s in scores.items():
    print(f"{name:>12}: CSI@1 {s['csi@1'][last]:.3f}, CRPS {s['crps'][last]:.3f} mm/h")

# %% [markdown]
# How to read the panels. Eulerian persistence loses skill as the rain moves and evolves;
# extrapolation along the estimated motion should lose it more slowly when the rain mostly
# moves, and no faster than persistence when growth and decay dominate or the motion estimate
# from a few small frames is poor. Watch the CRPS panel against the CSI panel: a forecast that
# predicts almost no rain can have the lowest mean absolute error where most pixels are dry
# while its CSI is zero, which is what an under-trained network does (this notebook's fast mode
# trains a couple of epochs on a few events). Pixel errors alone cannot tell a useful nowcast
# from a timid one.
#
# And the GAN? Its generator scales the last observed frame (rain `(last + 0.1) exp(delta) -
# 0.1`, `delta` its output), so before training it is Eulerian persistence scaled by a random
# factor, and a generator trained for minutes stays close to it: its lines lie on or near
# persistence's. DGMR beat
# optical flow on CSI at high thresholds and on pooled CRPS after training for days on years of
# UK radar; a few hundred generator steps on two rain events are not enough to learn the motion
# of the rain, let alone its growth. This notebook shows the method and its diagnostics, not a
# competitive model.
#
# ## Is the ensemble calibrated? Spread against error, and the rank histogram
#
# For a calibrated ensemble the observation is statistically one more member. Two checks:
#
# - **spread/skill**: the ensemble's spread (standard deviation of the members about their
#   mean) against the error of the ensemble mean (its RMSE), in mm/h, by lead; their ratio is 1
#   for a calibrated ensemble, below 1 when the ensemble is too confident;
# - **rank histogram** (notebook 7): the rank of the observation among the sorted members at
#   every wet pixel; flat when calibrated, U-shaped when the truth falls outside the ensemble
#   too often (under-dispersion).

# %%
ensembles = [name for name in ("GAN", "steps") if name in scores]
plots.plot_skill_by_lead(
    {name: {k: scores[name][k] for k in ("spread", "skill", "spread_skill")} for name in ensembles},
    lead_unit="minutes",
    units="mm/h",  # of spread and skill; their ratio has none
)

# %%
for name in ensembles:
    plots.plot_rank_histogram(
        forecasts[name].values,
        forecasts["observed"].values,
        ensemble_axis=1,  # (time, member, lead, y, x)
        min_value=0.1,  # mm/h: below it is dry; points dry everywhere are left out
        name=f"{name}, {MEMBERS} members",
    )

# %% [markdown]
# A spread far below the error and a U-shaped histogram, the truth mostly below or above all
# members, mean an over-confident ensemble; a spread above the error and a dome-shaped
# histogram, an over-dispersed one. The grid-cell regularizer alone asks for no spread at all
# (it scores the members' mean); the CRPS term asks for the right amount, but after minutes of
# training the GAN's spread mostly reflects its random initial scaling of the last frame rather
# than learnt uncertainty about where the rain goes. STEPS, whose spread is built in by its
# stochastic perturbations, shows what a spread-carrying ensemble looks like on the same
# windows (when pysteps is installed, outside fast mode).
#
# ## Power spectra: the blur that scores reward
#
# The radially averaged power spectrum says how much variance the field has at each
# wavelength. Real rain has a power law: plenty of small-scale structure. A blurred forecast
# loses power at short wavelengths, and its curve drops below the observations'. For an
# ensemble the spectra of the members are averaged: each member should look like radar.

# %%
spectra = xr.merge(
    [
        xr.open_dataset(workdir / "spectra.nc").rename(model="U-Net (MSE)"),
        xr.open_dataset(workdir / "gan" / "spectra.nc")[["model"]].rename(model="GAN"),
    ],
    compat="override",
)
nowcast_plots.plot_spectra(spectra)

# %% [markdown]
# Persistence has the spectrum of the last observed frame. Advection moves that frame and
# loses some power on the way (each semi-Lagrangian step interpolates, and rain leaves the
# domain). An MSE-trained network loses the most at short wavelengths, more with lead time: the
# price of minimizing squared error under uncertainty. The GAN's members keep about the
# observed power at every wavelength here, but mostly because they are still close to the last
# frame, and persistence keeps it too: a sharp spectrum is necessary for a realistic forecast,
# not sufficient for a good one.
#
# ## One forecast, tiled
#
# The test window with the most rain, observed and forecast at every lead, with the first
# three members of the GAN ensemble:

# %%
wettest = int(forecasts["observed"].sum(("lead", "y", "x")).argmax("time"))
window = forecasts.isel(time=wettest)
minutes = [f"{lead * 5}" for lead in cfg.data.leads]
shown = ["observed", "advection", "U-Net (MSE)", "GAN"]
nowcast_plots.plot_example(
    {name: window[name].values for name in shown}, minutes, units="mm/h", members=3
)

# %% [markdown]
# The same diagnostic in one figure for the fields of that window, with climml's generic
# spectrum plot (any gridded fields, wavelength in km). The mean of the GAN's members is shown
# too: averaging an ensemble is another conditional mean, and it blurs like the U-Net.

# %%
at_last = window.isel(lead=-1)
plots.plot_power_spectrum(
    {
        "observed": at_last["observed"].values,
        "advection": at_last["advection"].values,
        "U-Net (MSE)": at_last["U-Net (MSE)"].values,
        "GAN members": at_last["GAN"].values,  # spectra averaged over the members
        "GAN ensemble mean": at_last["GAN"].mean("member").values,
    },
    spacing_km=pixel_km,
    units="mm/h",
    title=f"Power spectra {minutes[-1]} minutes ahead, one window",
)

# %% [markdown]
# **Takeaways.** Always compare a nowcasting network with persistence and optical-flow
# extrapolation; read CSI and FSS at several thresholds and scales, and look at power spectra
# (and forecast maps) before trusting a model that wins on pixel scores: it may win by
# blurring. A generative ensemble answers with sharp members and their spread, verified with
# the CRPS, spread/skill and the rank histogram; it is only as good as its training, which for
# DGMR took far more data and compute than a CPU notebook. `climml run
# configs/nowcast_radar.yaml` (real MeteoSwiss radar), `climml run
# configs/nowcast_synthetic.yaml` or `climml run configs/nowcast_gan.yaml` writes these
# figures.
