import sys

from jaxstyle.cli.main import main

sys.exit(main())
