"""Convert the acdc download into nnU-Net raw format: see --help."""
from nnunet_losses.convert.acdc import main

raise SystemExit(main())
