"""The seam between the estimators and the work done beside their fits.

The estimators sit below tracking and never import it: they call these functions, and
``mnist_estimators.tracking`` registers itself here when it is imported (the package's
``__init__`` imports it, so an estimator unpickled in a worker process finds it registered).
With nothing registered, a fit is a plain skorch fit. See the design page,
``docs/design.md``, "The seams".

- ``cloned(source, twin)``: scikit-learn cloned ``source`` into ``twin``
  (``__sklearn_clone__``); tracking gives the twin the run context it will fit under.
- ``fit_callbacks(net)``: extra skorch callbacks for a fit about to start, as
  ``(name, callback)`` pairs, appended after the estimator's own.
- ``check_param(net, name)``: validate a parameter whose rules belong to the registrant
  (``tracking_options``); raises ``ValueError`` naming the estimator and the parameter.
"""

from __future__ import annotations

_clone_hooks = []
_callback_factories = []
_param_checks = {}


def on_clone(hook):
    """Register ``hook(source, twin)``, called after each clone of an estimator of ours."""
    if hook not in _clone_hooks:
        _clone_hooks.append(hook)
    return hook


def on_fit(factory):
    """Register ``factory(net) -> [(name, callback), ...]``, asked at every fit's
    initialization (and by ``get_params(deep=True)``, so it must accept any parameter value
    without raising)."""
    if factory not in _callback_factories:
        _callback_factories.append(factory)
    return factory


def param_check(name):
    """Register ``check(value, owner)`` as the validation of parameter ``name``."""
    def register(check):
        _param_checks[name] = check
        return check
    return register


def cloned(source, twin):
    for hook in _clone_hooks:
        hook(source, twin)


def fit_callbacks(net):
    out = []
    for factory in _callback_factories:
        out.extend(factory(net))
    return out


def check_param(net, name):
    check = _param_checks.get(name)
    if check is not None:
        check(getattr(net, name), f"{type(net).__name__}.{name}")
