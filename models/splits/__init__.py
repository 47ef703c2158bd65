"""Dataset splits shipped with vigil (YAML), e.g. ped2_weak.yaml for the unsupervised and weakly supervised methods."""
