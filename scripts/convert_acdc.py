"""Convert the acdc download into nnU-Net v2 raw format; see --help."""
from nnunet_losses.convert.acdc import main

raise SystemExit(main())
