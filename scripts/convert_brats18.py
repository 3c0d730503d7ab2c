"""Convert the brats18 download into nnU-Net raw format: see --help."""
from nnunet_losses.convert.brats18 import main

raise SystemExit(main())
