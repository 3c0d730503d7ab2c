"""Convert the brats18 download into nnU-Net v2 raw format; see --help."""
from nnunet_losses.convert.brats18 import main

raise SystemExit(main())
