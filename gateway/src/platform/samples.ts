// Questions in the form each committed adapter was trained on (parapeft/tasks/copa.py and boolq.py), for
// the printed examples and the demo; any other adapter gets a plain question.

const copa = (premise: string, question: 'cause' | 'effect', a: string, b: string) =>
  `Premise: ${premise}\nQuestion: ${question === 'cause' ? 'What was the cause of this?' : 'What happened as a result?'}\n` +
  `Options:\n- ${a}\n- ${b}\n\nReply with the more plausible option, copied exactly.`;

const boolq = (passage: string, question: string) =>
  `Read the passage and answer the question.\n\nPassage: ${passage}\n\nQuestion: ${question}\n\nAnswer with a single word: yes or no.`;

/** A task input and its correct answer (the demo shows both, so a wrong answer is visible as one). */
export interface Sample {
  prompt: string;
  expected: string;
}

export const COPA_QUESTIONS: Sample[] = [
  { prompt: copa('The man broke his toe.', 'cause', 'He dropped a hammer on his foot.', 'He got a hole in his sock.'), expected: 'He dropped a hammer on his foot.' },
  {
    prompt: copa('The woman tolerated her friend\u2019s difficult behavior.', 'cause', 'The woman knew her friend was going through a hard time.', 'The woman felt that her friend took advantage of her kindness.'),
    expected: 'The woman knew her friend was going through a hard time.',
  },
  { prompt: copa('The hamburger meat browned.', 'cause', 'The cook froze it.', 'The cook grilled it.'), expected: 'The cook grilled it.' },
];

export const BOOLQ_QUESTIONS: Sample[] = [
  { prompt: boolq('The Pacific Ocean is the largest and deepest of the Earth\u2019s five oceanic divisions. It extends from the Arctic Ocean in the north to the Southern Ocean in the south.', 'Is the Pacific Ocean the largest ocean on Earth?'), expected: 'yes' },
  { prompt: boolq('Penguins are a group of aquatic flightless birds. They live almost exclusively in the Southern Hemisphere, with only one species found north of the equator.', 'Can penguins fly?'), expected: 'no' },
  { prompt: boolq('Mount Everest is Earth\u2019s highest mountain above sea level, located in the Himalayas on the border between Nepal and China.', 'Is Mount Everest in the Himalayas?'), expected: 'yes' },
];

/** The question shown in the examples for `model`. */
export function sampleQuestion(model: string): string {
  if (model === 'copa') return COPA_QUESTIONS[0]!.prompt;
  if (model === 'boolq') return BOOLQ_QUESTIONS[0]!.prompt;
  return 'Write one short sentence about cats.';
}
