"""Method and model specs of the command line: ``NAME`` or ``NAME:key=value[:...]``.

Readable without TensorFlow for a bare name (the registry is TF-free); an ablation
variant's arguments are checked against the method's constructor.

Example:
```python
from keras_mwat.experiments.specs import parse_method_spec, parse_model_spec
parse_method_spec("mail:bias=-0.5:slope=10")   # ("mail", {"bias": -0.5, "slope": 10})
parse_model_spec("wide_resnet:depth=10")       # ("wide_resnet", {"depth": 10})
```
"""

from __future__ import annotations

#: Classifiers of ``--model`` (``km.zoo`` builders).
MODELS = ("small_cnn", "tiny_cnn", "fc1", "mlp", "cifar_small_cnn", "wide_resnet")


#: Held-out meta set of the bilevel methods: the paper's 1,000; 500 of the 3,500 embedded.
META_SIZE, EMBEDDED_META_SIZE = 1000, 500


def _spec_overrides(name: str, spec: str, assignments: list[str], accepted: set) -> dict:
    """The ``key=value`` parts of a model or method spec as keyword arguments: values are
    Python literals or, failing that, strings; keys must be in ``accepted``."""
    import ast

    overrides = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"expected key=value after {name!r} in {spec!r}, got "
                             f"{assignment!r}")
        if key not in accepted:
            raise ValueError(f"{name} takes no argument {key!r} (in {spec!r}); it takes "
                             f"{sorted(accepted)}")
        try:
            overrides[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            overrides[key] = text.strip()
    return overrides


def parse_model_spec(spec: str) -> tuple[str, dict]:
    """Splits a classifier spec ``NAME`` or ``NAME:key=value[:key=value...]`` into
    ``(name, overrides)``: a ``km.zoo`` builder of ``MODELS`` and keyword arguments for it.

    Values are Python literals (``10``, ``True``), else strings. ``input_shape`` and
    ``num_classes`` come from the data and cannot be given. Unknown models and arguments
    the builder does not take raise ``ValueError``.

    Example:

    ```python
    parse_model_spec("wide_resnet:depth=10:widen_factor=1")
    # ("wide_resnet", {"depth": 10, "widen_factor": 1})
    ```
    """
    import inspect

    from keras_mwat import zoo

    name, *assignments = [part.strip() for part in str(spec).split(":")]
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} in {spec!r}; choose from {list(MODELS)}")
    accepted = set(inspect.signature(getattr(zoo, name)).parameters)
    accepted -= {"input_shape", "num_classes"}
    return name, _spec_overrides(name, spec, assignments, accepted)


def parse_method_spec(spec: str) -> tuple[str, dict]:
    """Splits a method spec ``NAME`` or ``NAME:key=value[:key=value...]`` (an ablation
    variant: constructor arguments of the method) into ``(name, overrides)``.

    Values are Python literals (``3``, ``0.5``, ``None``) or, failing that, strings. Unknown
    methods and arguments the method's constructor does not take raise ``ValueError``; so
    do object arguments (``meta_data``, ``weight_net``, ``meta_optimizer``). MWAT's grouped
    options are spelled flat (``meta_objective``, ``meta_batch_size``, ``inner_lr``, ...:
    ``km.methods.mwat_options.FLAT_OPTIONS``) and folded into ``meta_set`` and
    ``look_ahead``. With ``meta_source=dataset`` the commands pass the validation split as
    ``meta_data``.

    Example:

    ```python
    parse_method_spec("pgd_at")                        # ("pgd_at", {})
    parse_method_spec("mail:bias=-0.5:slope=10")       # ("mail", {"bias": -0.5, "slope": 10})
    parse_method_spec("mwat:meta_objective=clean")     # MWAT's options, spelled flat:
    # ("mwat", {"meta_set": MetaSet(objective="clean", ...), "look_ahead": LookAhead()})
    ```
    """
    import inspect

    from keras_mwat import registry

    name, *assignments = [part.strip() for part in str(spec).split(":")]
    if name not in registry.METHOD_CLASSES:
        raise ValueError(f"unknown method {name!r} in {spec!r}; choose from "
                         f"{list(registry.method_names())}")
    if not assignments:  # the name alone is checked without loading TensorFlow
        return name, {}
    accepted = set()
    for klass in registry.method_class(name).__mro__:  # a subclass may pass **kwargs on (MWN to MWAT)
        if "__init__" in vars(klass) and klass.__module__.startswith("keras_mwat"):
            accepted |= set(inspect.signature(vars(klass)["__init__"]).parameters)
    accepted -= {"self", "classifier", "attack", "seed", "kwargs", "meta_data",
                 "weight_net", "meta_optimizer", "meta_set", "look_ahead"}
    method_class = registry.method_class(name)
    grouped = hasattr(method_class, "option_defaults")  # MWAT's family: grouped options
    if grouped:
        from keras_mwat.methods.mwat_options import FLAT_OPTIONS

        accepted |= set(FLAT_OPTIONS)  # spelled flat on the command line
    overrides = _spec_overrides(name, spec, assignments, accepted)
    if grouped:
        from keras_mwat.methods.mwat_options import group_flat_options

        overrides = group_flat_options(overrides, defaults=method_class.option_defaults,
                                       warn=False, owner=method_class.__name__)
    return name, overrides


def _run_name(spec: str) -> str:
    """Directory name of a method spec (``:`` is not portable in paths)."""
    return spec.replace(":", "+")
