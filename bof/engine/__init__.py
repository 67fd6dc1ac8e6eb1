"""Training, pretraining and prediction: one loop for every detector, tricks entering through config."""
