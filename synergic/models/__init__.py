"""The SDL^n model: backbones, DCNN components, synergic heads and their assembly."""
