"""Convert the INIA19 template (Debian's mricron-data) into nnU-Net v2 raw format; see --help."""
from nnunet_losses.convert.inia19 import main

raise SystemExit(main())
