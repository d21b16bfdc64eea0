"""Shared test setup: quiet TensorFlow logs and seed every test."""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import keras  # noqa: E402
import pytest  # noqa: E402

import keras_mwat as km  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_everything():
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_data():
    data = km.data.load_embedded().subset(train=96, validation=32, test=32, seed=0)
    return data


@pytest.fixture(scope="session")
def clean_cnn():
    """A small CNN trained (without attacks) on the embedded data, and its test split.

    At eps = 0.1 (L-infinity) it is partly robust, so attacks of different strength give
    different robust accuracies.
    """
    data = km.data.load_embedded()
    keras.utils.set_random_seed(0)
    model = km.zoo.small_cnn(input_shape=(28, 28, 1), num_classes=10, width=8)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(*data.train, epochs=2, batch_size=64, verbose=0)
    return model, data.test


# --------------------------------------------------------------------- the fast tier
# `make test-fast` leaves out the tests whose recorded duration (tests/durations.json, the
# call and set-up seconds of each test in a `make test` run) exceeds --max-duration. A
# test not in the file (a new one) is kept. Record the file again with
# `KERAS_MWAT_RECORD_DURATIONS=tests/durations.json make test`.
DURATIONS = os.path.join(os.path.dirname(__file__), "durations.json")
_recorded_durations: dict = {}


def pytest_addoption(parser):
    parser.addoption("--max-duration", type=float, default=None,
                     help="deselect tests whose duration in tests/durations.json exceeds this "
                          "many seconds (the fast tier)")


def pytest_collection_modifyitems(config, items):
    import json

    limit = config.getoption("--max-duration")
    if limit is None or not os.path.exists(DURATIONS):
        return
    with open(DURATIONS) as file:
        recorded = json.load(file)
    slow = [item for item in items if recorded.get(item.nodeid, 0.0) > limit]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if recorded.get(item.nodeid, 0.0) <= limit]


def pytest_runtest_logreport(report):
    if os.environ.get("KERAS_MWAT_RECORD_DURATIONS"):
        _recorded_durations[report.nodeid] = (_recorded_durations.get(report.nodeid, 0.0)
                                              + report.duration)


def pytest_sessionfinish(session):
    import json

    path = os.environ.get("KERAS_MWAT_RECORD_DURATIONS")
    if path and _recorded_durations:
        with open(path, "w") as file:
            json.dump({k: round(v, 2) for k, v in sorted(_recorded_durations.items())}, file,
                      indent=0)
