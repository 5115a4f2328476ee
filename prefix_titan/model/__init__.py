"""The model floor: the flavor table and torchtitan's Llama-3 with a head that can end in the loss."""
