import sys

from ewsgate.cli import main

sys.exit(main())
