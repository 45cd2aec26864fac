import sys

from tests.inventory import main

sys.exit(main(sys.argv[1:]))
