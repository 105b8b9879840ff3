"""Light clients: CometBFT (Tendermint) light blocks and transparency-log checkpoints."""
