# %% [markdown]
# # 1. Images are numbers: convolution, padding, stride and pooling on a real SST map
#
# A satellite image, a model field and a photograph are the same thing to a neural network: a
# grid of numbers. A **convolutional** network slides small grids of weights (filters) over that
# grid and learns the weights. Before training any network, this notebook does every operation
# of a convolutional layer by hand with `jax.numpy`, on a real map, and checks the result
# against the layer climml's models are built from (`climml.models.conv.Conv`, a drop-in for
# `flax.nnx.Conv`).
#
# The map is the Met Office Hadley Centre's HadISST sea surface temperature for August 2012
# (1-degree grid, Rayner et al. 2003), which ships inside cartopy; `climml.data.real` reads it
# without any download.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

import climml as cm
from climml.data.real.hadisst import hadisst_field
from climml.models.conv import Conv
from climml.viz import maps

FAST = os.environ.get("CLIMML_NOTEBOOK_FAST") == "1"  # nothing here is slow; kept for symmetry

sst = hadisst_field()  # xarray DataArray (lat, lon), degC, NaN over land
print(sst.dims, sst.shape, sst.dtype, sst.attrs.get("units", ""))
print(
    "latitudes",
    float(sst.lat[0]),
    "...",
    float(sst.lat[-1]),
    "| longitudes",
    float(sst.lon[0]),
    "...",
    float(sst.lon[-1]),
)
print(
    "the 3x3 numbers around 0.5N, 150.5W:\n",
    sst.sel(lat=slice(1.5, -0.5), lon=slice(-151.5, -149.5)).values.round(2),
)

# %% [markdown]
# On a map (cartopy, with the Natural Earth coastlines that ship with climml, so no download):

# %%
maps.plot_map(sst, title="HadISST sea surface temperature, August 2012")

# %% [markdown]
# To the network it is 180 x 360 numbers, degrees Celsius, one per 1-degree box. Land boxes
# hold NaN ("not a number"), and NaN spreads through any arithmetic: a filter that touches one
# land box returns NaN. Networks therefore need the missing values filled and, usually, a mask
# telling them where the data were missing (climml's `data.mask_channel` option adds it). Here
# we fill land with 0 after removing the ocean mean, so that land looks like "average ocean".

# %%
ocean = np.isfinite(sst.values)
x = jnp.asarray(np.where(ocean, sst.values - np.nanmean(sst.values), 0.0), jnp.float32)
lat, lon = sst.lat.values, sst.lon.values


def show(fields, titles, cmap="RdBu_r", units="degC"):
    """Maps side by side (rows are latitudes from north to south, as HadISST stores them)."""
    fig, axes = plt.subplots(
        1, len(fields), figsize=(4.2 * len(fields), 2.6), layout="constrained", squeeze=False
    )
    for ax, field, title in zip(axes[0], fields, titles, strict=True):
        field = np.asarray(field)
        limit = np.nanpercentile(np.abs(field), 99) or 1.0
        mesh = ax.imshow(
            field, cmap=cmap, vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest"
        )
        fig.colorbar(mesh, ax=ax, label=units, shrink=0.85)
        ax.set(
            title=f"{title}  {field.shape}",
            xlabel="column (longitude index)",
            ylabel="row (latitude index)",
        )
    plt.show()


show([x], ["HadISST August 2012, anomaly from the ocean mean"])

# %% [markdown]
# ## Convolution by hand
#
# A 2-D convolution layer with a `kh x kw` kernel `k` computes, at every output position,
#
# $$ y[i, j] = \sum_{a=0}^{k_h-1} \sum_{b=0}^{k_w-1} k[a, b]\; x[i + a, j + b] $$
#
# (deep-learning libraries do not flip the kernel, so strictly this is a cross-correlation).
# Instead of looping over the 64 800 output points we loop over the 9 kernel offsets and add
# shifted copies of the whole map: the same sum, written in array operations.


# %%
def conv2d_by_hand(x, k, stride=1):
    """'VALID' convolution of a (H, W) map with a (kh, kw) kernel: no padding."""
    kh, kw = k.shape
    h, w = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    out = jnp.zeros((h, w), x.dtype)
    for a in range(kh):
        for b in range(kw):
            out = out + k[a, b] * x[a : a + h, b : b + w]
    return out[::stride, ::stride]


# %% [markdown]
# Three classic filters, each a 3 x 3 grid of numbers:
#
# - a **box blur** (every weight 1/9) averages the neighbourhood: it smooths out small-scale
#   detail;
# - a **Sobel** filter (`[-1, 0, 1]` across, weighted `[1, 2, 1]` along) approximates a
#   derivative: it is large where SST changes quickly, at **ocean fronts** (the Gulf Stream, the
#   Kuroshio, the edge of the equatorial cold tongue);
# - a **Laplacian** responds to curvature: spots warmer or colder than their surroundings.
#
# A network learns such kernels instead of being given them: the first layer of a trained CNN
# usually contains smoothers and edge detectors.

# %%
filters = {
    "box blur": jnp.full((3, 3), 1 / 9),
    "Sobel (east-west gradient)": jnp.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8.0,
    "Laplacian": jnp.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], jnp.float32),
}
by_hand = {name: conv2d_by_hand(x, k) for name, k in filters.items()}
show(list(by_hand.values()), list(by_hand))
print("output shape with 'VALID' (no) padding:", by_hand["box blur"].shape)

# %% [markdown]
# ## The same thing with climml's layer
#
# `Conv(in_features, out_features, kernel_size)` holds a kernel of shape
# `(kh, kw, in_features, out_features)` and works on *channels-last* batches
# `(batch, lat, lon, channels)`. We overwrite its random weights with our filter and compare.

# %%
layer = Conv(1, 1, (3, 3), padding="VALID", use_bias=False, rngs=nnx.Rngs(0))
print("kernel shape", layer.kernel.shape)
sobel = filters["Sobel (east-west gradient)"]
layer.kernel[...] = sobel[:, :, None, None]
by_layer = layer(x[None, :, :, None])[0, :, :, 0]
print(
    "max |layer - by hand| =",
    float(jnp.max(jnp.abs(by_layer - by_hand["Sobel (east-west gradient)"]))),
)

# %% [markdown]
# Identical to float32 rounding. A real layer has many input channels (SST, heat content, their
# recent months) and many output channels (filters): each output channel sums one kernel per
# input channel, and a bias is added. That is all a convolution layer is.
#
# ## Padding, and why the globe has no edge
#
# A 'VALID' convolution shrinks the map by `k - 1` rows and columns. 'SAME' padding adds a
# border of `(k - 1) / 2` cells so that the output keeps the input's shape; by default the
# border is **zeros**. But longitude is periodic: the column east of 179.5 E is 179.5 W. Zero
# padding invents a wall at the dateline; `Conv(..., lon_periodic=True)` pads longitude with the
# values from the other side of the globe and latitude with zeros.

# %%
zero_pad = Conv(1, 1, (3, 3), padding="SAME", use_bias=False, rngs=nnx.Rngs(0))
wrap_pad = Conv(1, 1, (3, 3), padding="SAME", use_bias=False, lon_periodic=True, rngs=nnx.Rngs(0))
for layer in (zero_pad, wrap_pad):
    layer.kernel[...] = sobel[:, :, None, None]
g_zero = zero_pad(x[None, :, :, None])[0, :, :, 0]
g_wrap = wrap_pad(x[None, :, :, None])[0, :, :, 0]
print("'SAME' output shape:", g_zero.shape)
# The grid's first and last columns are 179.5W and 179.5E: neighbours across the dateline.
print(
    "mean |gradient| in the first and last columns: zero padding "
    f"{float(jnp.abs(g_zero[:, [0, -1]]).mean()):.3f}, wrap-around "
    f"{float(jnp.abs(g_wrap[:, [0, -1]]).mean()):.3f}, elsewhere "
    f"{float(jnp.abs(g_wrap[:, 1:-1]).mean()):.3f} degC per cell"
)
rows = slice(40, 140)  # 50N to 50S, where the Pacific crosses the dateline
show(
    [g_zero[rows, :12], g_wrap[rows, :12]],
    ["zero padding: a false front at 180", "wrap-around padding"],
    units="degC per cell",
)
# %% [markdown]
# With zero padding, the east-west gradient detector "sees" a jump from the Pacific to zero at
# the edge of the array and reports a front along the dateline that does not exist. A model
# would learn to use, or be confused by, this artefact of how we stored the map. With
# wrap-around padding the seam disappears; a model built from it gives the same answer if the
# map is stored starting at 0 E or at 180 E (it commutes with a roll in longitude).
#
# ## Stride: skipping positions
#
# A stride of 2 evaluates the filter at every second row and column: the output has a quarter of
# the points. Strides reduce resolution (and compute) inside a network.

# %%
strided = Conv(1, 1, (3, 3), strides=2, padding="VALID", use_bias=False, rngs=nnx.Rngs(0))
strided.kernel[...] = filters["box blur"][:, :, None, None]
by_layer = strided(x[None, :, :, None])[0, :, :, 0]
by_hand_2 = conv2d_by_hand(x, filters["box blur"], stride=2)
print(
    "stride 2:",
    x.shape,
    "->",
    by_layer.shape,
    "| max |layer - by hand| =",
    float(jnp.max(jnp.abs(by_layer - by_hand_2))),
)

# %% [markdown]
# ## Pooling: summarizing neighbourhoods
#
# **Pooling** has no weights: it replaces each `p x p` block by its maximum (max pooling) or its
# mean (average pooling). Max pooling keeps the strongest response of a filter in the block
# ("there is a front somewhere here"), which makes the network tolerant to small shifts, and
# halves the resolution at each stage so that later filters see larger regions. By hand it is a
# reshape into blocks and a reduction.


# %%
def pool_by_hand(x, p, reduce):
    h, w = x.shape[0] // p, x.shape[1] // p
    return reduce(x[: h * p, : w * p].reshape(h, p, w, p), axis=(1, 3))


fronts = jnp.abs(g_wrap)  # strength of the east-west SST gradient
max_hand = pool_by_hand(fronts, 4, jnp.max)
avg_hand = pool_by_hand(fronts, 4, jnp.mean)
max_layer = nnx.max_pool(fronts[None, :, :, None], (4, 4), strides=(4, 4))[0, :, :, 0]
avg_layer = nnx.avg_pool(fronts[None, :, :, None], (4, 4), strides=(4, 4))[0, :, :, 0]
print("4x4 pooling:", fronts.shape, "->", max_hand.shape)
print(
    "max |max_pool - by hand| =",
    float(jnp.max(jnp.abs(max_layer - max_hand))),
    "| max |avg_pool - by hand| =",
    float(jnp.max(jnp.abs(avg_layer - avg_hand))),
)
show(
    [fronts, max_hand, avg_hand],
    ["|SST gradient|", "4x4 max pool", "4x4 average pool"],
    cmap="magma",
    units="degC per cell",
)
# %% [markdown]
# Max pooling keeps the fronts visible at a quarter of the resolution; average pooling dilutes
# them with the quiet water around.
#
# ## Putting it together
#
# A CNN stacks these steps: convolution (learned filters) -> nonlinearity -> pooling, repeated,
# then a dense layer that maps the remaining small grid of features to the forecast. The
# Ham et al. (2019) ENSO model in `climml.models` (`cm.models.build("cnn", ...)`) is exactly
# `[Conv -> tanh -> max_pool] x 2 -> dense`; notebook 2 trains it. The number of weights stays
# small because the same 3 x 3 (or 4 x 8) kernel is reused at every position of the map:

# %%
spec = cm.models.IOSpec(input_shape=(3, 24, 48, 2), output_shape=(3,))  # 3 months, 2 fields
model = cm.models.build("cnn", spec, rngs=nnx.Rngs(0), filters=(8, 16))
for name, value in nnx.iter_graph(model):
    if isinstance(value, nnx.Param):
        print(f"{'.'.join(map(str, name)):<28} {str(value.shape):<18} {value.size:>7} weights")
n_weights = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
print(
    "total",
    n_weights,
    "weights; a dense layer from the 3x24x48x2 input to 8 units alone "
    f"would need {3 * 24 * 48 * 2 * 8 + 8}",
)
