"""The data of the command line's runs: the embedded set, Debian's Fashion-MNIST, or a
tensorflow-datasets dataset (``TFDSSplits``), all with ``EmbeddedData``'s interface.

Example:
```python
from keras_mwat.experiments.data_sources import TFDSSplits
data = TFDSSplits("mnist", data_dir="~/tensorflow_datasets")  # prepared offline
data.x_test.shape
```
"""

from __future__ import annotations


class TFDSSplits:
    """A prepared tensorflow-datasets dataset with the interface of ``EmbeddedData``.

    Training uses the first 90% of the "train" split, validation the last 10%, and the
    final evaluation the "test" split (at most ``test_limit`` samples, as arrays).
    """

    def __init__(self, name: str, data_dir=None, test_limit=None, value_range=(0.0, 1.0)):
        import numpy as np

        from keras_mwat.data.tfds import dataset_info, load_tfds

        self.name, self.data_dir, self.value_range = name, data_dir, tuple(value_range)
        self._load = load_tfds
        info = dataset_info(name, data_dir=data_dir)
        self.input_shape = tuple(info["input_shape"])
        self.num_classes = int(info["num_classes"])
        train_size = int(info["num_examples"].get("train", 0))
        self._end = train_size - train_size // 10  # absolute indices: tfds reads a mixed
        self.train_split = f"train[:{self._end}]"  # slice "train[16:90%]" as percents
        self.validation_split = f"train[{self._end}:]"
        self.y_train = np.zeros(self._end)  # only its length is used
        xs, ys = [], []
        for x, y in self._split("test", 512, shuffle=False):
            xs.append(x.numpy())
            ys.append(y.numpy())
            if test_limit and sum(len(b) for b in ys) >= test_limit:
                break
        self.x_test = np.concatenate(xs)[:test_limit]
        self.y_test = np.concatenate(ys)[:test_limit]

    def _split(self, split, batch_size, shuffle, seed=0):
        return self._load(self.name, split=split, data_dir=self.data_dir,
                          batch_size=batch_size, shuffle=shuffle, seed=seed,
                          value_range=self.value_range)

    def with_meta(self, size: int):
        """A copy whose first ``size`` training examples are a held-out meta set (``.meta``
        arrays; the first ones, not stratified) and no longer trained on."""
        import copy

        import numpy as np

        if size >= len(self.y_train):
            raise SystemExit(f"keras-mwat: --meta-size {size} must be smaller than the "
                             f"{len(self.y_train)} training examples")
        xs, ys = [], []
        for x, y in self._split(f"train[:{size}]", 512, shuffle=False):
            xs.append(x.numpy())
            ys.append(y.numpy())
        data = copy.copy(self)
        data.meta = (np.concatenate(xs), np.concatenate(ys))
        data.y_meta = data.meta[1]
        data.train_split = f"train[{size}:{self._end}]"
        data.y_train = self.y_train[size:]
        return data

    def train_dataset(self, batch_size=128, seed=0):
        return self._split(self.train_split, batch_size, shuffle=True, seed=seed)

    @property
    def x_val(self):
        """The validation split's images as an array (read on first use; for the
        best-checkpoint selection of ``compare`` and ``train --select best``)."""
        return self._validation_arrays()[0]

    @property
    def y_val(self):
        """The validation split's labels as an array."""
        return self._validation_arrays()[1]

    def _validation_arrays(self):
        import numpy as np

        if getattr(self, "_validation", None) is None:
            batches = [(x.numpy(), y.numpy())
                       for x, y in self._split(self.validation_split, 512, shuffle=False)]
            self._validation = (np.concatenate([x for x, _ in batches]),
                                np.concatenate([y for _, y in batches]))
        return self._validation

    def validation_dataset(self, batch_size=128):
        return self._split(self.validation_split, batch_size, shuffle=False)


def _load_data(args):
    import keras_mwat as km

    if args.dataset.startswith("tfds:"):
        return TFDSSplits(args.dataset[len("tfds:"):], data_dir=args.data_dir,
                          test_limit=args.test_subset)
    if args.dataset == "fashion_mnist":
        try:
            # The last 1,000 of the paper's held-out sets: the early-stopping (validation)
            # split, stratified, the same for every seed and method.
            data = km.data.load_fashion_mnist(path=args.data_dir, validation_size=1000, seed=0)
        except FileNotFoundError as error:
            raise SystemExit(f"keras-mwat: --dataset fashion_mnist: {error}") from None
    elif args.dataset == "embedded":
        # One fixed split for every run: --seed changes the initial weights, the data order
        # and the attacks, never which digits are test digits (a model trained with any seed
        # can be evaluated on the same, unseen test split).
        data = km.data.load_embedded(seed=0)
    else:
        raise SystemExit(f"keras-mwat: --dataset must be 'embedded', 'fashion_mnist' or "
                         f"'tfds:NAME', got {args.dataset!r}")
    if getattr(args, "subset", None) or getattr(args, "test_subset", None):
        data = data.subset(train=args.subset, validation=args.subset and max(args.subset // 4, 32),
                           test=args.test_subset, seed=0)
    return data
