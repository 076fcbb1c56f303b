"""The pinned CIFAR-10 test set: canonical arrays (``dataset``), every published format (``formats``),
and where it comes from (``store``: a given path, the verified cache, or the official download)."""
