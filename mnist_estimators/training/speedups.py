"""Speed patches to skorch's training loop, kept apart so that each can go when skorch fixes it.

Every method here replaces a skorch method with one that does the same work with less
per-batch overhead, and records the same history (``tests/test_estimators.py``,
``test_epoch_loop_records_what_skorchs_loop_records``, runs skorch's own loop beside ours).
Each says which skorch behaviour it replaces, what it saved and how that was measured, so
that it can be deleted on its own: the estimators are correct without any of them.
The timings are from ``benchmarks/bench_epoch.py`` (60,000 MNIST images, batch 128, 2 CPU
cores, skorch 1.4) and docs/results.md's "Speed, side by side".
"""

from __future__ import annotations

import torch
from skorch.callbacks import Callback
from skorch.dataset import get_len
from skorch.history import History
from torch import nn


class SkorchLoopSpeedups:
    """Mixin for a skorch ``NeuralNet``, listed before it in the bases: the same loop, faster.

    The overhead it removes is per batch, so it matters most where a batch is cheap (softmax
    regression, small MLPs). skorch's maintainers measured the same callback and history
    overhead in skorch issue #433 and pull request #730; none of the three is fixed in 1.4.

    Measured again when they moved here: thread CPU time per epoch on 60,000 images, batch
    128, one torch thread, four interleaved repeats, each patch swapped back for skorch's
    method as ``test_epoch_loop_records_what_skorchs_loop_records`` does. Without all three a
    softmax epoch took 6% longer and a 100-100 MLP epoch 13%; one at a time, 3% (``notify``),
    7% (``_set_training``) and 3% (``run_single_epoch``) for softmax, and within this shared
    machine's noise (about 5%) for the MLP.
    """

    def notify(self, method_name, **cb_kwargs):
        # Replaces skorch's NeuralNet.notify, which calls every callback for every event,
        # three events per batch, though most callbacks inherit the no-op. Calling only those
        # that override the event cuts ~2/3 of that cost (softmax: ~10 ms of a 150 ms epoch,
        # bench_epoch.py before and after). The list is rebuilt whenever callbacks_ changes.
        getattr(self, method_name)(self, **cb_kwargs)
        for cb in self._callbacks_for(method_name):
            getattr(cb, method_name)(self, **cb_kwargs)

    def _callbacks_for(self, method_name):
        callbacks = self.callbacks_
        cache = self.__dict__.get("notify_cache_")
        if cache is None or cache[0] is not callbacks:
            cache = (callbacks, {})
            self.__dict__["notify_cache_"] = cache
        by_event = cache[1]
        if method_name not in by_event:
            # An event skorch does not have reaches the callbacks that define it.
            base = getattr(Callback, method_name, None)
            by_event[method_name] = [
                cb for _, cb in callbacks
                if getattr(type(cb), method_name, None) not in (None, base)]
        return by_event[method_name]

    def _set_training(self, training=True):
        # Replaces skorch's NeuralNet._set_training, which skorch calls before every batch:
        # nn.Module.train() walks the whole module tree each time (13 us for the MLP, 26 us
        # for the CNN, timed with timeit: ~2% of an MLP epoch). The mode only changes between
        # training, validation and prediction, so the walk is done only when the top module's
        # mode is not already the one asked for.
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            if isinstance(module, nn.Module) and module.training != bool(training):
                module.train(training)

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        # Replaces skorch's NeuralNet.run_single_epoch, recording the same history. skorch
        # looks the current batch up in the history twice per batch (``record_batch``) and
        # finds the batch size with ``skorch.dataset.get_len``, which flattens the whole
        # batch; one lookup does, and ``len`` for a tensor. With _set_training: ~4% of a
        # 100-100 MLP epoch (bench_epoch.py; our loop 1.03-1.08x a loop with no overhead).
        # Any other history (skorch's DistributedHistory) takes skorch's own loop.
        if iterator is None or type(self.history).record_batch is not History.record_batch:
            return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        batch_count = 0
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            row = self.history[-1]["batches"][-1]
            row[prefix + "_loss"] = step["loss"].item()
            Xi = batch[0] if isinstance(batch, (tuple, list)) else batch
            row[prefix + "_batch_size"] = len(Xi) if torch.is_tensor(Xi) else get_len(Xi)
            self.notify("on_batch_end", batch=batch, training=training, **step)
            batch_count += 1
        self.history.record(prefix + "_batch_count", batch_count)
