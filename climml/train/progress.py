"""The training progress bar shared by every training loop (supervised, ensemble, adversarial)."""

from __future__ import annotations

import importlib.util

# tqdm.auto picks the Jupyter widget bar inside a notebook kernel, but without ipywidgets it
# warns ("IProgress not found") on every training call before falling back to text; choose the
# text bar ourselves when the widget bar cannot be drawn.
if importlib.util.find_spec("ipywidgets") is not None:
    from tqdm.auto import tqdm
else:
    from tqdm import tqdm


def step_bar(*, epochs: int, steps_per_epoch: int, epoch: int, batch: int, enabled: bool) -> tqdm:
    """A bar over all optimizer steps of a run, starting where a resumed run stands.

    epochs: the run's epoch budget; steps_per_epoch: optimizer steps (batches) per epoch;
    epoch, batch: the position a resumed run continues from (0, 0 for a fresh run).
    """
    return tqdm(
        total=epochs * steps_per_epoch,
        initial=min(epoch, epochs) * steps_per_epoch + batch,
        disable=not enabled,
        unit="step",
        smoothing=0,  # ETA from the mean rate since the start, validation time included
        dynamic_ncols=True,
    )
