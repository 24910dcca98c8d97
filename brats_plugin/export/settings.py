"""``brats send`` defaults shared by the library and the command line (plain constants: no heavy imports)."""

#: Our AE title when none is given.
DEFAULT_CALLING_AET = "BRATS"
#: Seconds to wait for the network and for each answer of the PACS.
DEFAULT_TIMEOUT = 30.0
