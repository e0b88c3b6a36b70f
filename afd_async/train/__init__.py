"""Training: the update rules shared by the synchronous oracle and the async learners."""
