"""Who is enrolled: people, their embeddings, the stores that keep them and the match index."""
