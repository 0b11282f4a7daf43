"A stand-in inference engine for tests: LoRA adapters applied by path per request, as vLLM applies them."
from llmrec_nb.llm import BACKENDS, LLM, bundled_tokenizer, register_backend


class AdapterByPath:
    "Answers every call with its own copy of the model, the request's adapter (`llm.adapter`, a folder) loaded onto it."
    def __init__(self):
        self.seen, self.models = [], {}

    def model_for(self, llm):
        from llmrec_nb.llm import load_llm
        from llmrec_nb.lora import load_adapter
        self.seen.append(llm.adapter)
        if llm.adapter not in self.models:
            self.models[llm.adapter] = load_llm(llm.name)
            if llm.adapter: load_adapter(self.models[llm.adapter], llm.adapter)
        return self.models[llm.adapter]

    def score_binary(self, llm, prompts, positive, negative, batch_size):
        from llmrec_nb.llm import score_binary
        return score_binary(self.model_for(llm), prompts, positive, negative, batch_size)

    def score_answers(self, llm, prompts, answers, batch_size):
        from llmrec_nb.llm import score_answers
        return score_answers(self.model_for(llm), prompts, answers, batch_size)

    def score_candidates(self, llm, prompt, candidates, reduce, batch_size, eos):
        from llmrec_nb.llm import score_candidates
        return score_candidates(self.model_for(llm), prompt, candidates, reduce, batch_size, eos)

    def generate(self, llm, prompts, max_new_tokens, num_beams, num_return_sequences, batch_size):
        from llmrec_nb.llm import generate
        return generate(self.model_for(llm), prompts, max_new_tokens, num_beams, num_return_sequences, batch_size)


class registered_engine:
    "`with registered_engine() as engine:` registers an `AdapterByPath` as backend 'by-path' for the block."
    def __enter__(self):
        self.engine = AdapterByPath()
        register_backend("by-path", lambda name, **kw: LLM(None, bundled_tokenizer(), name, "cpu", self.engine))
        return self.engine

    def __exit__(self, *exc): BACKENDS.pop("by-path", None)
