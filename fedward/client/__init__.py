"""The hospital side: the site algorithm and its thin Flower ClientApp."""
