import sys

from keras_mwat.cli import main

sys.exit(main())
