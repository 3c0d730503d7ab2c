"""Convert the kits19 download into nnU-Net v2 raw format; see --help."""
from nnunet_losses.convert.kits19 import main

raise SystemExit(main())
