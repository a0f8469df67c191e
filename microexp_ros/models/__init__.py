"""Models: the spiking AU classifier, its RGB baselines, the CVAE, and the safe weights format they share."""
