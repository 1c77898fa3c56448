"""`vlcurate experiment mini-datacomp`: a generated pool where curation matters, curated several ways, trained on and evaluated."""
