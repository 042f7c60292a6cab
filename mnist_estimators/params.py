"""Parameter validation as a table, in the spirit of scikit-learn's ``_parameter_constraints``.

An estimator class maps each parameter it validates to a list of constraints; a value is valid
when it satisfies any of them. ``validate(est)`` checks them all, at ``fit`` and never in
``__init__`` or ``set_params``, and raises with a message that says what was expected and echoes
what came in::

    The 'lr' parameter of MLPClassifier must be a float > 0. Got -1 instead.

scikit-learn's own machinery (``sklearn.utils._param_validation``) is private; this is the
small part of it the estimators need. A constraint is one of:

- a plain value (``None``, ``"auto"``, ``True``): the parameter equals it, as ``in`` compares;
- ``Interval(numbers.Real, 0, None, closed="neither")``: "a float > 0";
- ``Options(("float32", "bfloat16"))``: "one of ['float32', 'bfloat16']";
- ``InstanceOf(dict)``: "a dict";
- ``StartsWith("cuda", "'cuda', 'cuda:N'")``: its text form starts with the prefix;
- ``Hidden(constraint)``: accepted, but left out of the message;
- ``"no_validation"`` in place of the list: anything goes.

``describe(constraints)`` renders a list as the message does, for documentation.
"""

from __future__ import annotations

import numbers


class InvalidParameterError(ValueError, TypeError):
    """A parameter's value is not one its estimator accepts (a ValueError, as scikit-learn's
    own ``InvalidParameterError`` is)."""


class Constraint:
    """One way for a value to be valid: ``is_satisfied_by(value)``, and ``str`` says it."""

    hidden = False

    def is_satisfied_by(self, value):
        raise NotImplementedError


class Interval(Constraint):
    """An int or float within bounds.

    Parameters
    ----------
    type : numbers.Integral or numbers.Real
        Integral: "an int"; Real: "a float" (ints and floats alike, as ``numbers.Real`` has).
    left, right : number or None
        The bounds; None leaves that side open.
    closed : {"left", "right", "both", "neither"}
        Which bounds belong to the interval.
    """

    def __init__(self, type, left, right, *, closed):
        self.type, self.left, self.right, self.closed = type, left, right, closed

    def is_satisfied_by(self, value):
        if not isinstance(value, self.type):
            return False
        left_in = self.closed in ("left", "both")
        right_in = self.closed in ("right", "both")
        # NaN fails every comparison, so it is never within bounds.
        above = self.left is None or (value >= self.left if left_in else value > self.left)
        below = self.right is None or (value <= self.right if right_in else value < self.right)
        return above and below

    def __str__(self):
        kind = "an int" if self.type is numbers.Integral else "a float"
        left_in = self.closed in ("left", "both")
        right_in = self.closed in ("right", "both")
        if self.right is None:
            return f"{kind} {'>=' if left_in else '>'} {self.left}"
        if self.left is None:
            return f"{kind} {'<=' if right_in else '<'} {self.right}"
        return (f"{kind} in {'[' if left_in else '('}{self.left}, "
                f"{self.right}{']' if right_in else ')'}")


class Options(Constraint):
    """One of a list of values, compared as ``in`` compares: "one of ['a', 'b']"."""

    def __init__(self, values):
        self.values = tuple(values)

    def is_satisfied_by(self, value):
        return _contains(self.values, value)

    def __str__(self):
        return f"one of {list(self.values)}"


class InstanceOf(Constraint):
    """An instance of ``types``; ``text`` says it ("a dict", or "True or False" for bool)."""

    def __init__(self, types, text=None):
        self.types = types
        if text is None:
            first = types[0] if isinstance(types, tuple) else types
            text = "True or False" if first is bool else f"a {first.__name__}"
        self.text = text

    def is_satisfied_by(self, value):
        return isinstance(value, self.types)

    def __str__(self):
        return self.text


class StartsWith(Constraint):
    """A value whose text form starts with ``prefix`` (``"cuda:1"``); ``text`` says it."""

    def __init__(self, prefix, text):
        self.prefix, self.text = prefix, text

    def is_satisfied_by(self, value):
        return str(value).startswith(self.prefix)

    def __str__(self):
        return self.text


class Hidden(Constraint):
    """``constraint``, accepted but not said in messages (a value users need not be told of)."""

    hidden = True

    def __init__(self, constraint):
        self.constraint = as_constraint(constraint)

    def is_satisfied_by(self, value):
        return self.constraint.is_satisfied_by(value)

    def __str__(self):
        return str(self.constraint)


class _Equals(Constraint):
    def __init__(self, value):
        self.value = value

    def is_satisfied_by(self, value):
        return _contains((self.value,), value)

    def __str__(self):
        return repr(self.value)


def as_constraint(item):
    """A constraint as is; any other value as the constraint "equals this value"."""
    return item if isinstance(item, Constraint) else _Equals(item)


def describe(constraints):
    """The text of a constraint list, as messages say it: "None or a float in [0, 1)"."""
    if constraints == "no_validation":
        return "anything"
    shown = [str(c) for c in map(as_constraint, constraints) if not c.hidden]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


def describe_all(estimator_class):
    """``{parameter: text}`` for every parameter in ``estimator_class._parameter_constraints``."""
    return {name: describe(allowed)
            for name, allowed in estimator_class._parameter_constraints.items()}


def validate(estimator, constraints=None):
    """Check every parameter of ``estimator`` against ``constraints`` (by default its class's
    ``_parameter_constraints``), in the table's order; raise ``InvalidParameterError`` for
    the first that satisfies none of its constraints."""
    if constraints is None:
        constraints = type(estimator)._parameter_constraints
    for name, allowed in constraints.items():
        if allowed == "no_validation":
            continue
        value = getattr(estimator, name)
        if not any(as_constraint(c).is_satisfied_by(value) for c in allowed):
            raise InvalidParameterError(
                f"The '{name}' parameter of {type(estimator).__name__} must be "
                f"{describe(allowed)}. Got {value!r} instead.")


def _contains(values, value):
    # ``value in values``: identity, then ==. An array's == is not a truth value: not equal.
    try:
        return value in values
    except (TypeError, ValueError):
        return False
