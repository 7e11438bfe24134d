from suite.cli import main
from suite.distributed import leave

leave(main())
