import sys

from metta_exp.cli import main

sys.exit(main())
