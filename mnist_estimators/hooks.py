"""The seam between the estimators and the work done beside their fits.

The estimators sit below tracking and never import it: they call these functions, and
``mnist_estimators.tracking`` registers itself here when it is imported. The package's
``__init__`` names it as a plugin (``register_plugin``), and the estimators module calls
``load_plugins()`` as it is imported: tracking comes with the estimators, once, so that its
scikit-learn wrappers are in place before a search or a pipeline fits one, in the user's
process and in a worker that unpickles one. Importing the package alone stays light.
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

import importlib

_plugins = []               # module names, imported by load_plugins()
_plugins_loaded = 0         # how many of them are imported
_with_estimators = True     # load_plugins_with_estimators() imports them (defer_plugins)
_clone_hooks = []
_callback_factories = []
_param_checks = {}


def register_plugin(module):
    """Name a module that registers hooks when it is imported; ``load_plugins`` imports it."""
    if module not in _plugins:
        _plugins.append(module)


def load_plugins():
    """Import the plugins not imported yet (cheap once they all are)."""
    global _plugins_loaded
    while _plugins_loaded < len(_plugins):
        name = _plugins[_plugins_loaded]
        _plugins_loaded += 1  # first: a plugin that builds an estimator does not recurse
        try:
            importlib.import_module(name)
        except BaseException:
            _plugins_loaded -= 1  # tried again by the next caller, which sees the error too
            raise


def load_plugins_with_estimators():
    """What the estimators module calls as it is imported: ``load_plugins()``, unless this
    process said it will not fit (``defer_plugins``)."""
    if _with_estimators:
        load_plugins()


def defer_plugins():
    """For a process that only loads and applies fitted models (``mnist-estimators predict``):
    importing the estimators no longer imports the plugins; a clone or a fit still does first.
    Tracking's scikit-learn wrappers (0.2 s: they import ``sklearn.ensemble``) are then not in
    place for a search started later in this process, so the package's own code calls this
    only where nothing fits."""
    global _with_estimators
    _with_estimators = False


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
    load_plugins()
    for hook in _clone_hooks:
        hook(source, twin)


def fit_callbacks(net):
    load_plugins()
    out = []
    for factory in _callback_factories:
        out.extend(factory(net))
    return out


def check_param(net, name):
    load_plugins()
    check = _param_checks.get(name)
    if check is not None:
        check(getattr(net, name), f"{type(net).__name__}.{name}")
