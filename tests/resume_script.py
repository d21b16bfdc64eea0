"""Trains MWAT with BackupAndRestore; killed (os._exit) mid-epoch when KILL_AT is set.

Used by tests/test_resume.py: ``python tests/resume_script.py BACKUP_DIR OUT.npz``.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mwat as km  # noqa: E402


class KillAt(keras.callbacks.Callback):
    """Ends the process abruptly at (epoch, batch): no clean-up, like a killed job."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            os._exit(17)


def main(backup_dir, out):
    keras.utils.set_random_seed(0)
    data = km.data.load_embedded().subset(train=96, validation=32, test=32, seed=0)
    classifier = km.zoo.small_cnn(width=4, batch_norm=True)
    model = km.MWATModel(classifier, attack=km.attacks.PGD(eps=0.3, step_size=0.1,
                                                          num_steps=2),
                         meta_data=data.validation, meta_batch_size=16, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    callbacks = [keras.callbacks.BackupAndRestore(backup_dir, save_freq="epoch")]
    if os.environ.get("KILL_AT"):
        epoch, batch = map(int, os.environ["KILL_AT"].split(","))
        callbacks.append(KillAt(epoch, batch))
    model.fit(data.x_train, data.y_train, batch_size=32, epochs=3, shuffle=False,
              callbacks=callbacks, verbose=0)
    np.savez(out, *model.get_weights())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
